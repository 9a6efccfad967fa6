import pytest

from visionpipe.pipeline import runners, summary
from visionpipe.core.config import load_config


@pytest.mark.e2e
def test_beam_dag_runner_runs_the_data_stage_and_records_lineage(tmp_path):
    config = load_config("configs/digits.yaml", [
        "name=beam_runner", "data.num_images=60", "data.image_size=16", "model.image_size=16",
        "data.min_examples_per_class=0",  # 6 digits a class: the 4s get 1 training image
        f"runner.output_dir={tmp_path}"])
    paths = runners.run_pipeline(config, runner="beam", stop_after_data=True)
    result = summary.build_summary(paths, config)
    assert sum(result["data"]["splits"].values()) == 60
    assert {"ImageExampleGen", "StatisticsGen", "ExampleValidator", "DataGate"} <= set(paths.durations)
