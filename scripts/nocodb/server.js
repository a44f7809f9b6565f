// Starts the real NocoDB server (npm package) on $PORT; used by the tests and benchmarks.
const express = require('express');
const http = require('http');
const { Noco } = require('nocodb');

(async () => {
  const app = express();
  const httpServer = http.createServer(app);
  app.use(await Noco.init({}, httpServer, app));
  httpServer.listen(process.env.PORT || 8080, '127.0.0.1', () => {
    console.log(`nocodb listening on 127.0.0.1:${process.env.PORT || 8080}`);
  });
})().catch((error) => {
  console.error(error);
  process.exit(1);
});
