// The dashboard page: asks for an API key (kept in this tab's sessionStorage, sent only in
// the X-API-Key header, never in a URL), loads /dashboard/data for the chosen filters and
// draws each chart with vega-embed. The server filters and sums; the page only draws.
'use strict';

(() => {
  const KEY_STORAGE = 'analytics-assets.api-key';
  const byId = (id) => document.getElementById(id);
  const filters = {
    from: byId('filter-from'),
    to: byId('filter-to'),
    grain: byId('filter-grain'),
    model: byId('filter-model'),
    channel: byId('filter-channel'),
  };
  // `ast`: Vega interprets its expressions instead of compiling them with Function(), so
  // the page's Content-Security-Policy needs no 'unsafe-eval'.
  const EMBED_OPTIONS = { mode: 'vega-lite', actions: false, ast: true, renderer: 'svg' };
  const views = {};
  let latestRequest = 0; // an answer older than the latest request is dropped

  const period = { field: 'period', type: 'ordinal', title: null, axis: { labelAngle: -45 } };

  function stacked(values, title) {
    return {
      data: { values },
      mark: 'bar',
      encoding: {
        x: period,
        y: { field: 'count', type: 'quantitative', aggregate: 'sum', title: 'conversations' },
        color: { field: 'value', type: 'nominal', title },
        tooltip: [{ field: 'period' }, { field: 'value', title }, { field: 'count' }],
      },
    };
  }

  function perModel(rows, field, title) {
    return {
      data: { values: rows.filter((row) => row[field] !== null) },
      mark: { type: 'line', point: true },
      encoding: {
        x: period,
        y: { field, type: 'quantitative', title, scale: { zero: false } },
        color: { field: 'model', type: 'nominal' },
        tooltip: [{ field: 'period' }, { field: 'model' }, { field, format: '.3f' },
          { field: 'conversations' }],
      },
    };
  }

  function volumes(rows) {
    return {
      data: { values: rows },
      transform: [{ fold: ['conversations', 'messages'], as: ['measure', 'count'] }],
      mark: { type: 'line', point: true },
      encoding: {
        x: period,
        y: { field: 'count', type: 'quantitative', title: null },
        color: { field: 'measure', type: 'nominal', title: null },
        // How many days of its period a point holds: a week in progress has fewer.
        tooltip: [{ field: 'period' }, { field: 'measure' }, { field: 'count' },
          { field: 'days', title: 'days in range' }],
      },
    };
  }

  const CHARTS = {
    'chart-volumes': (data) => volumes(data.volumes),
    'chart-topics': (data) => stacked(data.topics, 'topic'),
    'chart-intents': (data) => stacked(data.intents, 'intent'),
    'chart-sentiments': (data) => stacked(data.sentiments, 'sentiment'),
    'chart-languages': (data) => stacked(data.languages, 'language'),
    'chart-quality': (data) => perModel(data.by_model, 'quality_mean', 'mean quality'),
    'chart-satisfaction': (data) => perModel(data.by_model, 'satisfaction_mean',
      'mean satisfaction'),
  };

  function setStatus(text, isError = false) {
    byId('status').textContent = text;
    byId('status').classList.toggle('error', isError);
  }

  function query() {
    const params = new URLSearchParams();
    for (const [name, input] of Object.entries(filters)) {
      if (input.value) params.set(name, input.value);
    }
    return params;
  }

  // The server lists the models and channels of the date range; a chosen one stays listed
  // even where the range has none of it, so the filter in force is always visible.
  function fillChoices(select, choices, chosen, allLabel) {
    const values = chosen && !choices.includes(chosen) ? [chosen, ...choices] : choices;
    select.replaceChildren(new Option(allLabel, ''), ...values.map((v) => new Option(v, v)));
    select.value = chosen || '';
  }

  function formatScore(value) {
    return value === null ? '–' : value.toFixed(3);
  }

  function showData(data) {
    filters.from.value = data.from;
    filters.to.value = data.to;
    fillChoices(filters.model, data.models, data.model, 'all models');
    fillChoices(filters.channel, data.channels, data.channel, 'all channels');
    byId('total-conversations').textContent = data.totals.conversations.toLocaleString('en');
    byId('total-messages').textContent = data.totals.messages.toLocaleString('en');
    byId('total-quality').textContent = formatScore(data.totals.quality_mean);
    byId('total-satisfaction').textContent = formatScore(data.totals.satisfaction_mean);
  }

  async function draw(data) {
    await Promise.all(Object.entries(CHARTS).map(async ([id, spec]) => {
      if (views[id]) views[id].finalize();
      // The width follows the page's grid; the height is fixed so that stacked bars keep
      // their room above the axis.
      const full = { width: 'container', height: 220,
        autosize: { type: 'fit-x', contains: 'padding' }, ...spec(data) };
      views[id] = await vegaEmbed(byId(id), full, EMBED_OPTIONS);
    }));
  }

  async function load() {
    const key = sessionStorage.getItem(KEY_STORAGE);
    if (!key) {
      setStatus('Enter an API key with the analytics:read scope.');
      return;
    }
    const request = ++latestRequest;
    document.body.dataset.state = 'loading';
    setStatus('Loading…');
    try {
      const response = await fetch(`/dashboard/data?${query()}`,
        { headers: { 'X-API-Key': key }, cache: 'no-store' });
      const body = await response.json().catch(() => null);
      if (request !== latestRequest) return;
      if (!response.ok) {
        if (response.status === 401) sessionStorage.removeItem(KEY_STORAGE);
        throw new Error(body?.error?.message || `the API answered ${response.status}`);
      }
      showData(body);
      await draw(body);
      if (request !== latestRequest) return;
      setStatus(`${body.from} to ${body.to}: ${body.totals.conversations} conversations.`);
      document.body.dataset.state = 'ready';
      // Which load the page shows: lets a test (or a person in the console) tell a
      // finished redraw from the one before.
      document.body.dataset.drawn = String(request);
    } catch (error) {
      if (request !== latestRequest) return;
      setStatus(error.message, true);
      document.body.dataset.state = 'error';
    }
  }

  byId('key-form').addEventListener('submit', (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY_STORAGE, byId('api-key').value.trim());
    byId('api-key').value = '';
    load();
  });
  byId('forget-key').addEventListener('click', () => {
    sessionStorage.removeItem(KEY_STORAGE);
    setStatus('Key forgotten. Enter an API key with the analytics:read scope.');
  });
  byId('filters').addEventListener('submit', (event) => event.preventDefault());
  for (const input of Object.values(filters)) input.addEventListener('change', load);
  load();
})();
