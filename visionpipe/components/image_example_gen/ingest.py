"""The ingest Beam pipeline shared by the ImageExampleGen executor and ``ingest()``.

source items -> read + decode + check (quarantine) -> de-duplicate by sha256 ->
split by content hash, group id or source split -> tf.Example -> ``<examples>/Split-<name>/data_tfrecord-*.gz``,
plus ``<examples>/class_names.json`` and ``<report>/quarantine.json``.
"""
from __future__ import annotations

import dataclasses
import logging
import posixpath
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import apache_beam as beam
from apache_beam import pvalue

import visionpipe  # noqa: F401
from visionpipe.components.image_example_gen import items as it
from visionpipe.components.image_example_gen.cropping import CropRules, crop_objects
from visionpipe.components.image_example_gen.encoding import to_tf_example
from visionpipe.components.image_example_gen.report import (REPORT_FILENAME, SHOWN_IN_ERROR,
                                                            build_report, check_report,
                                                            read_report, write_report)
from visionpipe.components.image_example_gen.sources import make_source
from visionpipe.components.image_example_gen.splitting import REQUIRED_SPLITS, SplitPlan
from visionpipe.components.image_example_gen.validation import ImageRules, validate_item
from visionpipe.core import examples as examples_contract
from visionpipe.core.config import ConfigError, PipelineConfig

EXAMPLES_FILE_PREFIX = examples_contract.EXAMPLES_FILE_PREFIX
_QUARANTINED = "quarantined"
_DUPLICATES = "duplicates"


@dataclass(frozen=True)
class IngestResult:
    counts_by_split: Dict[str, int]
    quarantined: int
    class_names: List[str]
    examples_uri: str
    report_path: str
    duplicates: int = 0
    objects_by_split: Dict[str, int] = field(default_factory=dict)
    total_inputs: int = 0

    @property
    def split_names(self) -> List[str]:
        return list(self.counts_by_split)


class _ValidateFn(beam.DoFn):
    def __init__(self, class_names: Optional[List[str]], needs_source_split: bool,
                 rules: ImageRules, needs_group: bool = False):
        self._class_names = class_names
        self._needs_source_split = needs_source_split
        self._rules = rules
        self._needs_group = needs_group

    def process(self, item: it.SourceItem):
        if self._needs_source_split and item.problem is None and item.source_split is None:
            item = dataclasses.replace(item, problem=(
                it.BAD_ANNOTATION, "belongs to none of the source's splits (data.use_source_splits is true)"))
        if self._needs_group and item.problem is None and item.group_id is None:
            item = dataclasses.replace(item, problem=(
                it.MISSING_GROUP, "has no group id (data.split_by is 'group'; see data.group_key "
                                  "or data.group_path_level)"))
        result = validate_item(item, self._class_names, self._rules)
        if isinstance(result, it.Quarantined):
            yield pvalue.TaggedOutput(_QUARANTINED, result.to_json())
        else:
            yield result


def _listing_order(image: it.ValidImage):
    """Where the source lists ``image``; by file name for a source without a listing."""
    return (not image.listing_index, image.listing_index, image.filename)


def _keep_first_copy(keyed: Tuple[str, Sequence[it.ValidImage]]) -> Iterator:
    """Keep the copy the source lists first; report the later ones as its duplicates."""
    sha256, copies = keyed
    copies = sorted(copies, key=_listing_order)
    for duplicate in copies[1:]:
        yield pvalue.TaggedOutput(_DUPLICATES, {"file": duplicate.filename,
                                                "duplicate_of": copies[0].filename, "sha256": sha256})
    yield copies[0]


# Named functions, not lambdas: Beam pickles these by reference on every runner.
def _key_by_sha256(image: it.ValidImage):
    return image.sha256, image


def _class_texts(image: it.ValidImage) -> List[str]:
    return image.labels + image.object_labels


def _assign_split(image: it.ValidImage, plan: SplitPlan):
    return plan.split_of(image.sha256, image.source_split, image.group_id), image


def _object_count(keyed) -> int:
    return len(keyed[1].boxes)


def _split_index(keyed, num_partitions: int, names: List[str]) -> int:
    return names.index(keyed[0])


def _encode(keyed, class_names: List[str]) -> bytes:
    return to_tf_example(keyed[1], class_names)


def _count_one(split: str, image: it.ValidImage):
    return split, (1, len(image.boxes))


def _sum_pairs(pairs):
    images = objects = 0
    for a, b in pairs:
        images, objects = images + a, objects + b
    return images, objects


def _class_hits(keyed):
    """(class, (split, file)) once for each class an image shows (labels or objects)."""
    split, image = keyed
    for name in sorted(set(image.labels) | set(image.object_labels)):
        yield name, (split, image.filename)


def _mask_pixels(keyed):
    """(split, pixels per mask value 0..255) of an image with a semantic mask."""
    import io

    import numpy as np
    from PIL import Image

    split, image = keyed
    if image.segmentation_mask:
        with Image.open(io.BytesIO(image.segmentation_mask)) as mask:
            yield split, np.bincount(np.asarray(mask).ravel(), minlength=256).astype(np.int64)


def _sum_counts(counts):
    import numpy as np

    return np.sum(list(counts), axis=0)


class _ClassTally(beam.CombineFn):
    """Images per split of one class, and the first few of its file names."""

    def __init__(self, files_kept: int):
        self._files_kept = files_kept

    def create_accumulator(self):
        return {}, []

    def add_input(self, accumulator, hit):
        counts, files = accumulator
        split, filename = hit
        counts[split] = counts.get(split, 0) + 1
        return counts, sorted(files + [filename])[:self._files_kept]

    def merge_accumulators(self, accumulators):
        counts, files = {}, []
        for part_counts, part_files in accumulators:
            for split, n in part_counts.items():
                counts[split] = counts.get(split, 0) + n
            files = sorted(files + part_files)[:self._files_kept]
        return counts, files

    def extract_output(self, accumulator):
        counts, files = accumulator
        return {"images_by_split": counts, "files": files}


def _finish(_, examples_uri, report_dir, plan_description, total, quarantined, duplicates,
            split_counts, class_names, class_tally, min_examples_per_class, mask_pixels):
    import tensorflow as tf

    names = plan_description["splits"]
    report = build_report(
        total=total, quarantined=quarantined, duplicates=duplicates,
        images_by_split={s: split_counts.get(s, (0, 0))[0] for s in names},
        objects_by_split={s: split_counts.get(s, (0, 0))[1] for s in names},
        class_names=class_names, split_plan=plan_description, class_tally=class_tally,
        min_examples_per_class=min_examples_per_class,
        mask_pixels={s: [int(n) for n in counts] for s, counts in mask_pixels.items()})
    write_report(report, report_dir)
    tf.io.gfile.makedirs(examples_uri)
    examples_contract.write_class_names(examples_uri, class_names)


def build_ingest(pipeline: beam.Pipeline, config: PipelineConfig, examples_uri: str,
                 report_dir: str) -> List[str]:
    """Adds the ingest transforms to ``pipeline``; returns the output split names."""
    data = config.data
    rules = ImageRules.from_config(config)
    source = make_source(data, rules.needs_semantic_mask)
    plan = SplitPlan(data, source.split_names)
    known_classes = list(data.class_names) or source.class_names

    items = source.read(pipeline)
    checked = items | "DecodeAndCheck" >> beam.ParDo(
        _ValidateFn(known_classes, plan.use_source_splits, rules, plan.by_group)).with_outputs(
            _QUARANTINED, main="valid")
    deduped = (checked.valid
               | "KeyBySha256" >> beam.Map(_key_by_sha256)
               | "GroupCopies" >> beam.GroupByKey()
               | "KeepFirstCopy" >> beam.FlatMap(_keep_first_copy).with_outputs(_DUPLICATES, main="unique"))
    if known_classes is None:
        class_names = (deduped.unique
                       | "ClassTexts" >> beam.FlatMap(_class_texts)
                       | "DistinctClasses" >> beam.Distinct()
                       | "ClassList" >> beam.combiners.ToList()
                       | "SortClasses" >> beam.Map(sorted))
    else:
        class_names = pipeline | "KnownClasses" >> beam.Create([known_classes])

    by_split = deduped.unique | "AssignSplit" >> beam.Map(_assign_split, plan)
    quarantined = [checked[_QUARANTINED]]
    duplicates = [deduped[_DUPLICATES]]
    input_counts = [items | "CountInputs" >> beam.combiners.Count.Globally()]
    if data.crop_objects:
        # every object is an input too, so data.max_bad_fraction weighs the crops dropped
        input_counts.append(by_split | "CountObjects" >> beam.Map(_object_count)
                            | "SumObjects" >> beam.CombineGlobally(sum))
        crops = by_split | "CropObjects" >> beam.FlatMap(
            crop_objects, CropRules.from_config(data), _QUARANTINED, _DUPLICATES).with_outputs(
                _QUARANTINED, _DUPLICATES, main="crops")
        by_split = crops.crops
        quarantined.append(crops[_QUARANTINED])
        duplicates.append(crops[_DUPLICATES])
    partitions = by_split | "PartitionBySplit" >> beam.Partition(
        _split_index, len(plan.names), plan.names)
    for name, partition in zip(plan.names, partitions):
        _ = (partition
             | f"Encode[{name}]" >> beam.Map(_encode, pvalue.AsSingleton(class_names))
             | f"Write[{name}]" >> beam.io.WriteToTFRecord(
                 posixpath.join(examples_contract.split_dir(examples_uri, name), EXAMPLES_FILE_PREFIX),
                 file_name_suffix=".gz",
                 compression_type=beam.io.filesystem.CompressionTypes.GZIP))

    split_counts = (by_split
                    | "CountPerSplit" >> beam.MapTuple(_count_one)
                    | "SumPerSplit" >> beam.CombinePerKey(_sum_pairs))
    class_tally = (by_split
                   | "ClassHits" >> beam.FlatMap(_class_hits)
                   | "TallyPerClass" >> beam.CombinePerKey(_ClassTally(SHOWN_IN_ERROR)))
    mask_pixels = (by_split
                   | "MaskPixels" >> beam.FlatMap(_mask_pixels)
                   | "SumMaskPixels" >> beam.CombinePerKey(_sum_counts))
    total = (input_counts | "AllInputs" >> beam.Flatten()
             | "SumInputs" >> beam.CombineGlobally(sum))
    _ = (pipeline
         | "ReportTrigger" >> beam.Create([None])
         | "WriteReport" >> beam.Map(
             _finish, examples_uri, report_dir, plan.describe(),
             pvalue.AsSingleton(total),
             pvalue.AsList(quarantined | "AllQuarantined" >> beam.Flatten()),
             pvalue.AsList(duplicates | "AllDuplicates" >> beam.Flatten()),
             pvalue.AsDict(split_counts),
             pvalue.AsSingleton(class_names), pvalue.AsDict(class_tally),
             data.min_examples_per_class, pvalue.AsDict(mask_pixels)))
    return plan.names


def run_ingest(make_pipeline: Callable[[], beam.Pipeline], config: PipelineConfig,
               examples_uri: str, report_dir: str) -> Tuple[IngestResult, dict]:
    """Runs the pipeline and reads back its report; does not apply the quarantine gate."""
    with make_pipeline() as pipeline:
        build_ingest(pipeline, config, examples_uri, report_dir)
    report = read_report(report_dir)
    result = IngestResult(
        counts_by_split=report["images_by_split"], quarantined=report["quarantined_count"],
        class_names=report["class_names"], examples_uri=examples_uri,
        report_path=posixpath.join(report_dir, REPORT_FILENAME), duplicates=report["duplicate_count"],
        objects_by_split=report["objects_by_split"], total_inputs=report["total_inputs"])
    logging.info("ImageExampleGen: %d inputs, kept %s, %d quarantined %s, %d duplicates",
                 result.total_inputs, result.counts_by_split, result.quarantined,
                 report["counts_by_reason"], result.duplicates)
    for warning in report.get("warnings", []):
        logging.warning("ImageExampleGen: %s", warning)
    return result, report


def check_result(report: dict, result: IngestResult, config: PipelineConfig,
                 report_path: Optional[str] = None) -> None:
    """Raises QuarantineLimitExceeded / EmptySplitError / SparseClassError with one readable
    message naming ``report_path`` (default: where the ingest wrote the report)."""
    required = [s for s in REQUIRED_SPLITS if s in result.counts_by_split]
    check_report(report, report_path or result.report_path, config.data.max_bad_fraction, required,
                 config.data.min_examples_per_class)


def _has_files(folder: str) -> bool:
    import tensorflow as tf

    return tf.io.gfile.isdir(folder) and bool(tf.io.gfile.listdir(folder))


def ingest(config: PipelineConfig, output_dir: str,
           beam_pipeline_args: Optional[List[str]] = None) -> IngestResult:
    """Ingest ``config.data`` without TFX: Examples in ``<output_dir>/examples`` and the
    report in ``<output_dir>/quarantine_report``. Raises QuarantineLimitExceeded when more
    than data.max_bad_fraction of the inputs were quarantined (the report is written first).
    """
    config.validate()
    examples_uri = posixpath.join(output_dir, "examples")
    if _has_files(examples_uri):
        raise ConfigError(f"{examples_uri} already holds examples; remove it or choose another "
                          "output folder (a new run never mixes with an old one)")
    args = config.runner.beam_pipeline_args() if beam_pipeline_args is None else beam_pipeline_args
    result, report = run_ingest(lambda: beam.Pipeline(argv=args), config, examples_uri,
                                posixpath.join(output_dir, "quarantine_report"))
    check_result(report, result, config)
    return result
