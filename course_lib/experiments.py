"""The protocol of the course's cached experiments, written once: notebook 06's LLM students
(:mod:`course_lib.llm.experiment`) and speculative-decoding measurements
(:mod:`course_lib.llm.speculative_experiment`), notebook 08's DistilBERT case study
(:mod:`course_lib.encoder.experiment`). Each is minutes to tens of minutes of CPU, so ``make setup``
builds it once and the notebook loads it.

An experiment module defines ``run_experiment(folder, settings, progress) -> results`` and one
:class:`CachedExperiment`; the module's public functions are that object's methods::

    EXPERIMENT = CachedExperiment("llm_distillation", recipe_version=1, settings_field="llm",
                                  module=sys.modules[__name__], run=run_experiment, notebook="06")
    settings_for, experiment_key_inputs = EXPERIMENT.settings_for, EXPERIMENT.key_inputs
    experiment, load_results = EXPERIMENT.folder, EXPERIMENT.load_results

* **Settings** live in :mod:`course_lib.profiles`, like the image notebooks': the profile's field
  ``settings_field`` (``None`` where that profile has no such experiment: :meth:`settings_for` then
  raises ``NotImplementedError`` instead of silently running another profile's). The functions'
  default is the quick profile's settings, the ones ``make setup`` builds.
* **The key** (:mod:`course_lib.artifacts`): the recipe version (bump it for a change the code does
  not show), the settings, torch's major.minor, ``extra_key(settings)`` (e.g. the teacher's key) and
  the code of ``module`` and of every ``course_lib`` module it imports, followed through their
  imports (:func:`course_lib.artifacts.package_modules`; docstrings and comments do not count). This
  module is plumbing (caching, loading, the command line), not code of a run: it is not in the key.
* **The command line**: ``python -m <module> [--rebuild]`` builds it (``make setup``), with the
  threads configured and a one-line report.
* **Built on first use.** ``make lab`` does not build these (JupyterLab opens in minutes); the
  notebook that needs one builds it when first run. Before a build, :meth:`folder` prints what it
  builds, where it will be cached and how long it should take: this machine's last build of the
  experiment when its cache holds one (any key), else :data:`REFERENCE_BUILD_MINUTES`, the course's
  2-core reference CPU. The run itself shows its progress bars.
"""
from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from .artifacts import (METADATA_FILE, artifact_dir, artifact_metadata, cached_artifact, package_modules,
                        source_fingerprint, torch_version)
from .profiles import PROFILES, configure_threads

__all__ = ["CachedExperiment", "REFERENCE_BUILD_MINUTES"]

# Minutes one build took on the course's 2-core reference CPU (make setup of issue 23's rebuild:
# 368 s, 434 s and 1,177 s); only for the estimate printed before a build on a machine that has not
# built the experiment yet. A machine that has uses its own last build instead.
REFERENCE_BUILD_MINUTES = {"llm_distillation": 6, "speculative_decoding": 7, "distilbert_case_study": 10}


@dataclasses.dataclass(frozen=True)
class CachedExperiment:
    """One cached experiment: its artifact ``name``, where its settings live and how it runs."""

    name: str                                      # the artifact's name (folder ``<cache>/<name>-<key>``)
    recipe_version: int
    settings_field: str                            # the Profile field holding its settings
    module: ModuleType                             # whose code (and imports) the key fingerprints
    run: Callable[[Path, Any, bool], dict]         # run(folder, settings, progress) -> results
    notebook: str                                  # "06": for messages
    extra_key: Callable[[Any], dict] = lambda settings: {}
    # built_first(settings, progress): an artifact this one reads (for these settings), built before it
    built_first: Callable[[Any, bool], Any] | None = None
    results_file: str = "results.json"

    @property
    def quick(self) -> Any:
        """The quick profile's settings: the default everywhere, what ``make setup`` builds."""
        return getattr(PROFILES["quick"], self.settings_field)

    def settings_for(self, profile) -> Any:
        """The settings in ``profile`` (a :class:`course_lib.profiles.Profile`); raises
        ``NotImplementedError`` where that profile has none, rather than running another profile's."""
        settings = getattr(profile, self.settings_field)
        if settings is None:
            planned = profile.planned.get(self.settings_field)
            raise NotImplementedError(
                f"notebook {self.notebook}'s {self.name} experiment exists for the quick profile only (profile "
                f"{profile.name!r}: " + (f"{planned} is not implemented yet" if planned else "no settings") +
                "); run it with COURSE_PROFILE=quick")
        return settings

    def key_inputs(self, settings: Any = None) -> dict:
        settings = self.quick if settings is None else settings
        return {"recipe_version": self.recipe_version, "settings": dataclasses.asdict(settings),
                **self.extra_key(settings), "torch": torch_version(),
                "code": source_fingerprint(*package_modules(self.module))}

    def folder(self, settings: Any = None, *, rebuild: bool = False, progress: bool = True) -> Path:
        """The artifact folder, built first if missing (its results record the build time)."""
        settings = self.quick if settings is None else settings
        if self.built_first is not None:
            self.built_first(settings, progress)
        key_inputs = self.key_inputs(settings)
        target = artifact_dir(self.name, key_inputs)
        if rebuild or artifact_metadata(target) is None:
            print(self.build_notice(target), flush=True)
        return cached_artifact(self.name, key_inputs, lambda folder: self.run(folder, settings, progress),
                               rebuild=rebuild)

    def build_notice(self, target: Path) -> str:
        """What :meth:`folder` prints before a build: what, how long (this machine's last build of this
        experiment if the cache holds one, else the reference CPU's), where it is cached."""
        last = []
        for meta_file in target.parent.glob(f"{self.name}-*/{METADATA_FILE}"):
            try:
                meta = json.loads(meta_file.read_text(encoding="utf-8"))
                last.append((meta["built"], float(meta["build_seconds"])))
            except (OSError, ValueError, KeyError, TypeError):
                continue
        if last:
            minutes = max(1, round(max(last)[1] / 60))
            how_long = f"about {minutes} minute{'s' * (minutes != 1)} (this machine's last build of it)"
        else:
            minutes = REFERENCE_BUILD_MINUTES.get(self.name)
            how_long = (f"about {minutes} minutes on a 2-core CPU (the course's reference machine)" if minutes
                        else "several minutes")
        return (f"building notebook {self.notebook}'s {self.name} experiment, once: {how_long}; "
                f"cached in {target} for every later run")

    def load_results(self, settings: Any = None) -> dict:
        """The experiment's ``results.json``, built first if missing."""
        return json.loads((self.folder(settings) / self.results_file).read_text(encoding="utf-8"))

    def main(self, summary: Callable[[dict], str] | None = None, argv: list[str] | None = None) -> Path:
        """``python -m <module> [--rebuild]``: build the quick profile's artifact and report it."""
        import argparse

        parser = argparse.ArgumentParser(description=f"Build notebook {self.notebook}'s {self.name} experiment "
                                                     f"(a cached artifact).")
        parser.add_argument("--rebuild", action="store_true", help="run it again even if the artifact exists")
        cli = parser.parse_args(argv)
        configure_threads()
        start = time.perf_counter()
        folder = self.folder(rebuild=cli.rebuild)
        print(f"[{self.name}] {folder} ({time.perf_counter() - start:.0f} s)")
        if summary is not None:
            print(summary(json.loads((folder / self.results_file).read_text(encoding="utf-8"))))
        return folder
