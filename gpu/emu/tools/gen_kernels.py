#!/usr/bin/env python3
"""Turns CUDA kernel sources into host C++ translation units for the emulated device.

    gen_kernels.py OUT_DIR UNIT.cu [UNIT.cu ...]

For each UNIT.cu writes OUT_DIR/UNIT.emu.cpp: the emulator's built-ins header, the unit with its
`__shared__` declarations rewritten (the only CUDA syntax a macro cannot express), and one
`EMU_KERNEL(name)` registration per `extern "C" __global__` function. `#line` keeps compiler
messages pointing at the original file. A `__shared__` form it does not understand is an error.
"""

import pathlib
import re
import sys

BOUNDS = r'(?:__launch_bounds__\s*\([^)]*\)\s*)?'
KERNEL = re.compile(r'extern\s+"C"\s+__global__\s+' + BOUNDS + r'void\s+' + BOUNDS + r'(\w+)\s*\(')
ALIGN = r'(?:__align__\s*\(\s*(\d+)\s*\)\s*)?'
DYNAMIC = re.compile(r'extern\s+__shared__\s+' + ALIGN + r'([\w:<>, ]+?)\s+(\w+)\s*\[\s*\]\s*;')
STATIC = re.compile(r'__shared__\s+' + ALIGN + r'([\w:<>, ]+?)\s+(\w+)\s*((?:\[[^\]]+\])+)\s*;')


def rewrite(text: str, path: str) -> tuple[str, list[str]]:
    # Dynamic shared memory starts 16-byte aligned (as on a GPU); a larger __align__ is refused.
    def dynamic(m: re.Match) -> str:
        if m.group(1) and int(m.group(1)) > 16:
            raise SystemExit(f'{path}: __align__({m.group(1)}) on dynamic shared memory: the emulator gives 16')
        return f'{m.group(2)}* {m.group(3)} = emu_dynamic_shared<{m.group(2)}>();'

    # Static shared memory keeps its __align__ (else the type's own alignment, as on a GPU).
    def static(m: re.Match) -> str:
        align = m.group(1) or f'alignof({m.group(2)})'
        return f'EMU_STATIC_SHARED({m.group(2)}, {m.group(3)}, {m.group(4)}, {align});'

    text = DYNAMIC.sub(dynamic, text)
    text = STATIC.sub(static, text)
    for n, line in enumerate(text.splitlines(), 1):
        code = line.split('//', 1)[0]
        if '__shared__' in code:
            raise SystemExit(f'{path}:{n}: unsupported __shared__ declaration for the emulator: {line.strip()}')
    names = KERNEL.findall(text)
    if not names:
        raise SystemExit(f'{path}: no extern "C" __global__ kernels found')
    return text, names


def main() -> None:
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    out = pathlib.Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    for unit in sys.argv[2:]:
        src = pathlib.Path(unit)
        text, names = rewrite(src.read_text(), str(src))
        body = ['#include "cuda_emu_kernel.h"', f'#line 1 "{src.resolve()}"', text, '']
        body += [f'EMU_KERNEL({n})' for n in names]
        dest = out / (src.stem + '.emu.cpp')
        new = '\n'.join(body) + '\n'
        if not dest.exists() or dest.read_text() != new:
            dest.write_text(new)
        print(f'{src.name}: {len(names)} kernels: {" ".join(names)}')


if __name__ == '__main__':
    main()
