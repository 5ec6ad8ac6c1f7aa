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
"""
from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from .artifacts import cached_artifact, package_modules, source_fingerprint, torch_version
from .profiles import PROFILES, configure_threads

__all__ = ["CachedExperiment"]


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
    built_first: Callable[[bool], Any] | None = None   # an artifact this one reads, built before it
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
            self.built_first(progress)
        return cached_artifact(self.name, self.key_inputs(settings),
                               lambda folder: self.run(folder, settings, progress), rebuild=rebuild)

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
