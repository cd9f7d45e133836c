"""What a run makes, as file lists: the targets, each model's cells and their twins, the
files gathered into each table, the benchmarked jobs, and which figures a run draws (from
``biaslab.plan.figures``).

``Targets`` is built once at parse time from the plan (``biaslab.plan.families``), each
family's ``(grid row, cell path)`` pairs (the workflow's Paramspace instance patterns) and the
pretrained plan; the Snakefile's input functions ask it, and tests ask it without Snakemake.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import product
from typing import Any

from biaslab.base.columns import intervened, knob_path_values, untreated
from biaslab.plan import paths
from biaslab.plan.figures import FIGURE_TABLE, FigureSpec

Cells = Sequence[tuple[Mapping[str, Any], str]]

#: The gathered tables of a run with trained families.
TRAINED_TABLES = (
    "results/metrics.parquet",
    "results/predictions.parquet",
    "results/train_log.parquet",
    "results/probe.parquet",
    "results/tables/table3_knn.csv",
    "results/tables/summary.md",
    "results/aggregate.parquet",
    "results/contrasts.parquet",
    "results/claims.parquet",
    "results/tables/claims.md",
)
DIFFLENS_TABLES = ("results/difflens/probes.parquet", "results/difflens/features.parquet")
PRETRAINED_TABLES = ("results/pretrained/metrics.parquet", "results/pretrained/predictions.parquet")


def _key(row: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(knob_path_values(row).values())


@dataclass
class Targets:
    """The run's files. ``plan``: name -> ``Family``; ``cells``: name -> its ``(row, cell)``
    pairs; ``depth``: the depth family's name (None without one); ``pretrained``: name ->
    ``PretrainedModel``; ``pretrained_cells``: ``(row, cell)`` of every pretrained grid row;
    ``model_rows``: pretrained name -> the rows it is sampled on; ``study_rows``: the bypass
    study's rows; ``study_models``: the models drawn in it."""

    plan: Mapping[str, Any]
    cells: Mapping[str, Cells]
    depth: str | None = None
    pretrained: Mapping[str, Any] = field(default_factory=dict)
    pretrained_cells: Cells = ()
    model_rows: Mapping[str, list] = field(default_factory=dict)
    study_rows: Sequence[Mapping[str, Any]] = ()
    study_models: Sequence[str] = ()

    def __post_init__(self) -> None:
        # each cell path by its knob values, and each pretrained row by its cell path: the
        # twin and row lookups of the input functions, built once
        self._cell_of = {
            name: {_key(row): cell for row, cell in cells} for name, cells in self.cells.items()
        }
        self._pretrained_cell_of = {_key(row): cell for row, cell in self.pretrained_cells}
        self._pretrained_row_of = {cell: row for row, cell in self.pretrained_cells}

    @classmethod
    def of(
        cls,
        config: Mapping[str, Any],
        plan: Mapping[str, Any],
        cells: Mapping[str, Cells],
        pretrained: Mapping[str, Any],
        pretrained_cells: Cells,
    ) -> Targets:
        """The targets of a checked config, its plan and pretrained plan, and the cells."""
        from biaslab.plan.pretrained import bypass_study_rows, in_bypass_study, model_rows

        dataset = config["data"]["dataset"]
        return cls(
            plan=plan,
            cells=cells,
            depth=dataset if dataset in plan else None,
            pretrained=pretrained,
            pretrained_cells=pretrained_cells,
            model_rows={name: model_rows(config, m) for name, m in pretrained.items()},
            study_rows=bypass_study_rows(config),
            study_models=[n for n, m in pretrained.items() if in_bypass_study(config, m)],
        )

    # -- trained models -----------------------------------------------------------------
    def models(self, names: Iterable[str] | None = None) -> list[dict[str, str]]:
        """The wildcards of every trained model (of families ``names``)."""
        return [
            dict(dataset=name, fraction=fraction, depth=depth, seed=seed)
            for name in names or self.plan
            for fraction, depth, seed in product(
                self.plan[name].fractions, self.plan[name].depths, self.plan[name].seeds
            )
        ]

    def model_paths(self, template: str = paths.MODEL) -> list[str]:
        return [template.format(**m) for m in self.models()]

    def model_cells(self, name: str, fraction: str, depth: str) -> list[str]:
        """The cells sampled on one model: every grid row, less the intervened ones on a
        model without an SAE."""
        sae = self.plan[name].has_sae(fraction, depth)
        return [cell for row, cell in self.cells[name] if sae or not intervened(row)]

    def cell_patterns(self, name: str, intervened_cells: bool) -> list[tuple[Any, str]]:
        """The ``(row, cell)`` pairs one model job samples: its unintervened rows, or its
        SAE-intervened rows (``intervene_<dataset>``)."""
        return [(r, c) for r, c in self.cells[name] if intervened(r) == intervened_cells]

    def eval_files(self, file: str) -> list[str]:
        """``file`` of every cell of every model (``results/eval/<model>/<cell>/``)."""
        return [
            f"{paths.EVAL_OF.format(MODEL=paths.MODEL.format(**m), cell=cell)}/{file}"
            for m in self.models()
            for cell in self.model_cells(m["dataset"], m["fraction"], m["depth"])
        ]

    def same_seed_tables(self) -> list[str]:
        """The same-seed similarity table of every intervened cell."""
        return [
            f"{paths.EVAL_OF.format(MODEL=paths.MODEL.format(**m), cell=cell)}/same_seed.parquet"
            for m in self.models()
            if self.plan[m["dataset"]].has_sae(m["fraction"], m["depth"])
            for row, cell in self.cells[m["dataset"]]
            if intervened(row)
        ]

    def twin_cells(self, name: str, cells: Cells) -> list[str]:
        """Each intervened cell's unintervened twin (same knobs, ``untreated``): the cell its
        samples are compared with, seed for seed. ``plan.difflens`` checks each has one."""
        cell_of = self._cell_of[name]
        return [cell_of[_key(untreated(row, "intervene"))] for row, _cell in cells]

    def model_inputs(self, m: Mapping[str, str]) -> dict[str, Any]:
        """What a model job's cells read (``jobs.cells.ModelFiles``)."""
        fam = self.plan[m["dataset"]]
        features = paths.TRAIN_FEATURES if fam.features_scope == "train" else paths.BASE_FEATURES
        return {
            "model": paths.MODEL_DIR.format(**m),
            "train": paths.TRAIN.format(**m),
            "base": paths.BASE.format(**m),
            "train_features": features.format(**m),
            "classifier": paths.CLASS_CLASSIFIER.format(**m),
            "attribute_classifier": self.attribute_classifiers(m["dataset"]),
        }

    def attribute_classifiers(self, dataset: str) -> list[str]:
        """The attribute classifiers a family's cells use beside the class classifier
        (BFFHQ: gender as the bias; CelebA: the Male x Blond_Hair groups), or none."""
        targets = self.plan[dataset].attribute_targets
        return [paths.CLASSIFIER.format(dataset=dataset, target=t) for t in targets]

    def twin_samples(self, m: Mapping[str, str], cells: Cells) -> list[str]:
        """The samples of each intervened cell's twin on model ``m`` (``twin_cells``)."""
        model = paths.MODEL.format(**m)
        return [
            paths.SAMPLES_OF.format(MODEL=model, cell=twin)
            for twin in self.twin_cells(m["dataset"], cells)
        ]

    def same_seed_files(self, root: str, file: str, fraction: str, seed: str) -> list[str]:
        """``file`` of the same-seed cell of every depth of the depth family, at one skew and
        training seed (``root``: results/samples or results/eval)."""
        fam = self.plan[self.depth]
        return [
            f"{root}/{paths.MODEL}/{self.same_seed_cell()}/{file}".format(
                dataset=self.depth, fraction=fraction, depth=depth, seed=seed
            )
            for depth in fam.depths
        ]

    def difflens_sampling(self, dataset: str, batch_size: int) -> dict[str, Any]:
        """The sampling settings whose loop DiffLens captures: the family's first grid row
        without intervention, with ``difflens.n_samples`` samples."""
        fam = self.plan[dataset]
        return {
            **fam.sampling_params(knob_path_values(fam.difflens["reference"])),
            "n_samples": fam.difflens["n_samples"],
            "batch_size": int(batch_size),
        }

    def difflens_models(self) -> list[dict[str, str]]:
        """The wildcards of every model that has an SAE."""
        return [
            dict(dataset=name, fraction=fraction, depth=depth, seed=seed)
            for name, fam in self.plan.items()
            if fam.difflens is not None
            for fraction, depth in sorted(fam.difflens["models"])
            for seed in fam.seeds
        ]

    def difflens_paths(self, file: str) -> list[str]:
        """``file`` under the DiffLens folder of every model that has an SAE."""
        return [f"{paths.DIFFLENS.format(**m)}/{file}" for m in self.difflens_models()]

    def benchmark_jobs(self) -> list[tuple[str, dict[str, str]]]:
        """``(file, job)`` of every benchmarked model job: the training and the sampling job
        of every model, the intervention job of every model with an SAE."""
        jobs = []
        for m in self.models():
            rules = ["train_diffusion", f"sample_evaluate_{m['dataset']}"]
            fam = self.plan[m["dataset"]]
            if fam.has_sae(m["fraction"], m["depth"]) and self.cell_patterns(m["dataset"], True):
                rules.append(f"intervene_{m['dataset']}")
            jobs += [(paths.BENCHMARK.format(rule=r, **m), dict(rule=r, **m)) for r in rules]
        return jobs

    def same_seed_cell(self) -> str:
        """The sampler cell drawn in the same-seed grids: the depth grid's first row."""
        return self.cells[self.depth][0][1]

    # -- pretrained models --------------------------------------------------------------
    def pretrained_files(self, file: str, kinds=("unet", "text_to_image")) -> list[str]:
        """``file`` of every sampler cell of every pretrained model of ``kinds``."""
        return [
            f"{paths.PRETRAINED_CELL_OF.format(pretrained=name, cell=cell)}/{file}"
            for name, m in self.pretrained.items()
            if m.kind in kinds
            for row, cell in self.pretrained_cells
            if row in self.model_rows[name]
        ]

    def pretrained_row(self, cell: str) -> Mapping[str, Any]:
        return self._pretrained_row_of[cell]

    def study_files(self, name: str, file: str) -> list[str]:
        """``file`` of the bypass study's cells of model ``name``, in bypass order."""
        return [
            f"{paths.PRETRAINED_CELL_OF.format(pretrained=name, cell=cell)}/{file}"
            for cell in (self._pretrained_cell_of[_key(r)] for r in self.study_rows)
        ]

    def pretrained_twin(self, name: str, cell: str) -> dict[str, str]:
        """A bypassed pretrained cell's unbypassed twin, when the model is sampled on it:
        its samples, for the same-seed similarity (empty otherwise)."""
        row = self.pretrained_row(cell)
        twin = untreated(row, "bypass")
        if float(row["bypass"]) == 0.0 or twin not in self.model_rows[name]:
            return {}
        cell = paths.PRETRAINED_CELL_OF.format(
            pretrained=name, cell=self._pretrained_cell_of[_key(twin)]
        )
        return {"reference": f"{cell}/samples.npz"}

    # -- what a run makes ---------------------------------------------------------------
    def draws(self, spec: FigureSpec) -> bool:
        """Whether this run draws figure ``spec`` (its ``when``)."""
        fams = list(self.plan.values())
        return {
            "trained": bool(fams),
            "conditional": any(f.conditional for f in fams),
            "bypass": any(len({r["bypass"] for r in f.knob_rows}) > 1 for f in fams),
            "difflens": any(f.difflens is not None for f in fams),
            "depth": self.depth is not None,
            "pretrained": bool(self.pretrained),
            "bypass_study": bool(self.study_models),
        }[spec.when]

    def figure_stems(self, spec: FigureSpec) -> list[str]:
        """The file stems of figure ``spec`` in this run (one per model where ``per``)."""
        if not self.draws(spec):
            return []
        if spec.per is None:
            return [spec.file_stem]
        fills = {
            "difflens_model": self.difflens_models,
            "depth_skew_seed": lambda: [
                dict(fraction=f, seed=s)
                for f, s in product(self.plan[self.depth].fractions, self.plan[self.depth].seeds)
            ],
            "bypass_model": lambda: [dict(pretrained=n) for n in self.study_models],
        }[spec.per]()
        return [spec.file_stem.format(**fill) for fill in fills]

    def figure_targets(self) -> list[str]:
        return [
            paths.figure(stem, ext)
            for spec in FIGURE_TABLE
            for stem in self.figure_stems(spec)
            for ext in ("png", "pdf")
        ]

    def all(self) -> list[str]:
        """The default target: every table and figure of the trained families (when there
        are any) and of the pretrained models."""
        tables = []
        if self.plan:
            tables += TRAINED_TABLES
            if any(f.difflens is not None for f in self.plan.values()):
                tables += DIFFLENS_TABLES
        if self.pretrained:
            tables += PRETRAINED_TABLES
        return tables + self.figure_targets()
