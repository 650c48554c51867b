"""`xenkit uboot-script`: ImageBuilder's job, from its config or xenkit's TOML."""

from __future__ import annotations

import argparse
from pathlib import Path

from xenkit.errors import XenkitError


def cmd_uboot_script(args: argparse.Namespace) -> int:
    from xenkit.bootscripts import bootscript, scriptgen

    root = Path(args.dir)
    if args.first_stage:
        if not (args.server and args.ip):
            raise XenkitError("--first-stage needs --server IP and --ip IP")
        name = args.output or "boot"
        text = scriptgen.first_stage(root, name, args.server, args.ip, args.next)
        print(text, end="")
        print(f"wrote {root / name}.scr: put it on the SD card's boot partition")
        return 0
    if not args.config:
        raise XenkitError("-c CONFIG is required (an ImageBuilder config or a xenkit .toml)")
    plan = scriptgen.generate(Path(args.config), root, args.type, args.output)
    cfg = plan.config
    source, script = scriptgen.output_names(cfg, args.output)
    print(f"wrote {root / source} and {root / script}; load it with:")
    print(f"  {scriptgen.hint(cfg, script, plan.address)}")
    if not args.explain:
        return 0
    print()
    print(bootscript.explain(plan.loads, plan.address))
    ram = [(cfg.memory_start, cfg.memory_end - cfg.memory_start)]
    run = bootscript.dry_run(plan.script, root, ram, plan.reserved)
    print()
    print("dry run: the script's fdt edits applied to the DTB give")
    print(scriptgen.chosen_dts(run.tree))
    for problem in run.problems:
        print(f"problem: {problem}")
    print("dry run: " + ("no problems" if not run.problems else f"{len(run.problems)} problems"))
    return 1 if run.problems else 0
