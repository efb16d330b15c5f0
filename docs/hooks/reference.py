"""Build hook: one reference page per kind, generated from the registry at build time.

A part registered by a plugin package (entry point ``nnblocks.parts``) or listed in
``NNBLOCKS_PLUGINS`` appears on its kind's page without anyone editing the docs.
"""

from __future__ import annotations

from pathlib import Path

from mkdocs.structure.files import File

from nnblocks import registry


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def kind_page(kind: registry.Kind) -> str:
    lines = [f"# Kind `{kind.name}`", "", kind.summary, "", "## Contract", ""]
    lines += ["```text", registry.contract_of(kind.name), "```", "", "## Parts", ""]
    lines += ["| part | arguments | summary | provided by |", "| --- | --- | --- | --- |"]
    for name in registry.list_parts(kind.name):
        entry = registry.get_entry(kind.name, name)
        summary = entry.summary or "*undocumented*"
        lines.append(
            f"| `{name}` | `{_cell(entry.arguments) or '-'}` | {_cell(summary)} "
            f"| `{_cell(str(entry.source))}` |"
        )
    lines += ["", f"List them in a terminal with `nnblocks parts {kind.name}`."]
    return "\n".join(lines) + "\n"


def index_page(kinds: list[registry.Kind]) -> str:
    lines = [
        "# Reference: kinds and parts",
        "",
        "Generated from the registry when the site",
        "is built: every registered part, built in or from a plugin, is listed.",
        "",
        "| kind | parts | contract |",
        "| --- | --- | --- |",
    ]
    for kind in kinds:
        count = len(registry.list_parts(kind.name))
        lines.append(f"| [{kind.name}]({kind.name}.md) | {count} | {_cell(kind.summary)} |")
    return "\n".join(lines) + "\n"


def on_config(config):
    """Put the generated kind pages into the navigation under "Reference"."""
    kinds = [f"reference/{k.name}.md" for k in registry.kinds()]
    for entry in config["nav"]:
        if isinstance(entry, dict) and "Reference" in entry:
            entry["Reference"] = ["reference/index.md", *kinds, *entry["Reference"]]
    return config


def on_files(files, config):
    kinds = list(registry.kinds())
    pages = {"reference/index.md": index_page(kinds)}
    pages.update({f"reference/{k.name}.md": kind_page(k) for k in kinds})
    for path, content in pages.items():
        files.append(File.generated(config, path, content=content))
    # The performance page includes benchmarks/results.md, whose chart sits beside it.
    for chart in sorted(Path(config["config_file_path"]).parent.glob("benchmarks/*.png")):
        files.append(File.generated(config, f"guide/{chart.name}", content=chart.read_bytes()))
    return files
