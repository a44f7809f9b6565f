"""What the pipeline's runs cost: measuring a step, the history of runs, predicting a
range's duration. Pure: no Dagster."""
