#!/usr/bin/env python3
"""Turns CUDA kernel sources into host C++ translation units for the emulated device.

    gen_kernels.py OUT_DIR [--headers DIR] UNIT.cu [UNIT.cu ...]

For each UNIT.cu writes OUT_DIR/UNIT.emu.cpp: the emulator's built-ins header, the unit with its
`__shared__` declarations rewritten and its inline PTX translated (the only CUDA syntax a macro
cannot express), and one `EMU_KERNEL(name)` registration per `extern "C" __global__` function.
With `--headers DIR`, every DIR/*.cuh is written to OUT_DIR with its inline PTX translated (the
units' `#include "x.cuh"` finds OUT_DIR first: it is the including file's own directory).
`#line` keeps compiler messages pointing at the original files. A `__shared__` form or an inline
PTX statement it does not understand is an error.
"""

import pathlib
import re
import sys

BOUNDS = r'(?:__launch_bounds__\s*\([^)]*\)\s*)?'
# A bounds macro (an upper-case name such as NTT_BOUNDS) may stand between `void` and the name.
KERNEL = re.compile(r'extern\s+"C"\s+__global__\s+' + BOUNDS + r'void\s+' + BOUNDS +
                    r'(?:[A-Z][A-Z0-9_]*\s+)?(\w+)\s*\(')
ALIGN = r'(?:__align__\s*\(\s*(\d+)\s*\)\s*)?'
DYNAMIC = re.compile(r'extern\s+__shared__\s+' + ALIGN + r'([\w:<>, ]+?)\s+(\w+)\s*\[\s*\]\s*;')
STATIC = re.compile(r'__shared__\s+' + ALIGN + r'([\w:<>, ]+?)\s+(\w+)\s*((?:\[[^\]]+\])+)\s*;')


# ---- inline PTX ------------------------------------------------------------------------------
#
# The kernels' carry chains are inline PTX (`asm("add.cc.u32 ...")`, field.cuh), which the host
# compiler cannot assemble. Each such statement is translated here into C++ that does what the
# PTX ISA says each instruction does, with the condition code's carry flag (CC.CF) as a variable:
# so the emulated device runs the same instruction sequence, operand numbering and carry flow as
# the GPU, instead of the portable C++ path. What it does not check is the PTX compiler's own
# code generation. Operands are separate registers (as in PTX, whose registers are virtual): an
# output is written back when the statement ends. Anything outside the supported subset, an
# output read before it is written or never written, an input written, or a carry read before
# an instruction of the same statement set it (CC.CF does not survive between asm statements) is
# an error here, at build time.

ASM = re.compile(r'\b(?:asm|__asm__)\b(\s+(?:volatile|__volatile__)\b)?\s*\(')


def _scan_to_close(text: str, start: int) -> int:
    """Index of the ')' that closes the '(' just before `start` (strings and chars skipped)."""
    depth = 1
    i = start
    while i < len(text):
        c = text[i]
        if c in '"\'':
            q = c
            i += 1
            while i < len(text) and text[i] != q:
                i += 2 if text[i] == '\\' else 1
        elif c in '([{':
            depth += 1
        elif c in ')]}':
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise ValueError('unbalanced parentheses')


def _split_top(text: str, sep: str) -> list[str]:
    """Splits on `sep` outside strings and brackets."""
    parts, depth, cur, i = [], 0, [], 0
    while i < len(text):
        c = text[i]
        if c in '"\'':
            q = c
            j = i + 1
            while j < len(text) and text[j] != q:
                j += 2 if text[j] == '\\' else 1
            cur.append(text[i:j + 1])
            i = j + 1
            continue
        if c in '([{':
            depth += 1
        elif c in ')]}':
            depth -= 1
        if c == sep and depth == 0:
            parts.append(''.join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    parts.append(''.join(cur))
    return parts


STRING = re.compile(r'"((?:[^"\\]|\\.)*)"')
ESCAPES = {'n': '\n', 't': '\t', '"': '"', '\\': '\\', "'": "'"}


def _template(text: str) -> str:
    rest = STRING.sub('', text)
    if rest.strip():
        raise ValueError(f'the template is not string literals only: {rest.strip()!r}')
    out = []
    for m in STRING.finditer(text):
        s, i = m.group(1), 0
        while i < len(s):
            if s[i] == '\\':
                if s[i + 1] not in ESCAPES:
                    raise ValueError(f'unsupported escape \\{s[i + 1]} in the template')
                out.append(ESCAPES[s[i + 1]])
                i += 2
            else:
                out.append(s[i])
                i += 1
    return ''.join(out)


OPERAND = re.compile(r'^\s*"([^"]*)"\s*\((.*)\)\s*$', re.S)


def _operands(text: str) -> list[tuple[str, str]]:
    if not text.strip():
        return []
    out = []
    for part in _split_top(text, ','):
        m = OPERAND.match(part)
        if not m:
            raise ValueError(f'operand not understood: {part.strip()!r}')
        out.append((m.group(1), ' '.join(m.group(2).split())))
    return out


U32 = 'unsigned int'
U64 = 'unsigned long long'


def translate_asm(body: str) -> str:
    """C++ for the inside of one `asm( ... )` (template : outputs : inputs [: clobbers])."""
    parts = _split_top(body, ':')
    if not 2 <= len(parts) <= 4:
        raise ValueError('expected asm(template : outputs : inputs [: clobbers])')
    template = _template(parts[0])
    outputs = _operands(parts[1])
    inputs = _operands(parts[2]) if len(parts) > 2 else []
    decl, writes = [], []
    kind = {}  # operand number -> 'out' | 'inout' | 'in' | 'imm'
    for n, (con, expr) in enumerate(outputs):
        if con in ('=r', '=&r'):
            kind[n] = 'out'
            decl.append(f'{U32} _p{n};')
        elif con == '+r':
            kind[n] = 'inout'
            decl.append(f'{U32} _p{n} = ({U32})({expr});')
        else:
            raise ValueError(f'output constraint "{con}" (only =r, =&r and +r: 32-bit registers)')
        writes.append(f'({expr}) = _p{n};')
    for m, (con, expr) in enumerate(inputs):
        n = len(outputs) + m
        if con == 'r':
            kind[n] = 'in'
        elif con == 'n':
            kind[n] = 'imm'
        else:
            raise ValueError(f'input constraint "{con}" (only r and n)')
        decl.append(f'const {U32} _p{n} = ({U32})({expr});')

    written = {n for n, k in kind.items() if k == 'inout'}
    carry_set = False
    code = []

    def source(op: str, ins: str) -> str:
        op = op.strip()
        if op.startswith('%'):
            n = int(op[1:])
            if n not in kind:
                raise ValueError(f'{ins}: operand {op} does not exist')
            if kind[n] == 'out' and n not in written:
                raise ValueError(f'{ins}: reads output {op} before writing it')
            return f'_p{n}'
        try:
            return f'({U32}){int(op, 0) & 0xffffffff}u'
        except ValueError:
            raise ValueError(f'{ins}: operand {op!r} is neither %N nor an integer') from None

    for ins in (s.strip() for s in re.split(r'[;\n]', template)):
        if not ins:
            continue
        op, _, args = ins.partition(' ')
        args = [a for a in (x.strip() for x in args.split(',')) if a]
        parts_ = op.split('.')
        base, mods = parts_[0], parts_[1:]
        if not mods or mods[-1] != 'u32':
            raise ValueError(f'{ins}: only .u32 instructions are translated')
        mods = mods[:-1]
        cc = 'cc' in mods
        mods = [m for m in mods if m != 'cc']
        uses_cf = base in ('addc', 'subc', 'madc')
        if base in ('add', 'addc', 'sub', 'subc') and not mods:
            want = 3
        elif base in ('mad', 'madc') and mods in (['lo'], ['hi']):
            want = 4
        elif base == 'mov' and not mods and not cc:
            want = 2
        else:
            raise ValueError(f'{ins}: instruction not in the translated subset '
                             '(add/addc/sub/subc{.cc}.u32, mad/madc.{lo,hi}{.cc}.u32, mov.u32)')
        if len(args) != want:
            raise ValueError(f'{ins}: {len(args)} operands, expected {want}')
        if uses_cf and not carry_set:
            raise ValueError(f'{ins}: reads the carry flag before an instruction of this statement sets it')
        if not args[0].startswith('%') or kind.get(int(args[0][1:])) not in ('out', 'inout'):
            raise ValueError(f'{ins}: the destination {args[0]} is not an output operand')
        srcs = [source(a, ins) for a in args[1:]]
        cf = ' + _cf' if uses_cf else ''
        if base == 'mov':
            expr = f'({U64}){srcs[0]}'
        elif base in ('add', 'addc'):
            expr = f'({U64}){srcs[0]} + {srcs[1]}{cf}'
        elif base in ('sub', 'subc'):
            expr = f'({U64}){srcs[0]} - {srcs[1]}{" - _cf" if uses_cf else ""}'
        else:
            prod = f'({U64}){srcs[0]} * {srcs[1]}'
            part = f'({U64})({U32})({prod})' if mods == ['lo'] else f'(({prod}) >> 32)'
            expr = f'{part} + {srcs[2]}{cf}'
        dest = int(args[0][1:])
        line = f'_w = {expr}; _p{dest} = ({U32})_w;'
        if cc:
            # Carry out of an addition is bit 32; a borrow out of a subtraction wraps the 64-bit
            # difference, so bit 63 says it.
            line += f' _cf = ({U32})(_w >> 63);' if base in ('sub', 'subc') else f' _cf = ({U32})(_w >> 32);'
            carry_set = True
        written.add(dest)
        code.append(line)
    for n, k in kind.items():
        if k == 'out' and n not in written:
            raise ValueError(f'output %{n} is never written')
    return ('do { /* inline PTX translated by gen_kernels.py */ '
            + ' '.join(decl) + f' {U64} _w; {U32} _cf = 0; (void)_w; (void)_cf; '
            + ' '.join(code) + ' ' + ' '.join(writes) + ' } while (0)')


def rewrite_asm(text: str, path: str) -> str:
    """Every inline-PTX statement of `text` as C++; line numbers kept (the translation is one line,
    followed by as many newlines as the statement had)."""
    out, pos = [], 0
    for m in ASM.finditer(text):
        if m.start() < pos:
            continue
        line = text.count('\n', 0, m.start()) + 1
        # Skip matches inside a line comment.
        if '//' in text[text.rfind('\n', 0, m.start()) + 1:m.start()]:
            continue
        try:
            close = _scan_to_close(text, m.end())
            code = translate_asm(text[m.end():close])
        except ValueError as e:
            raise SystemExit(f'{path}:{line}: inline PTX the emulator cannot run: {e}')
        out.append(text[pos:m.start()])
        out.append(code + '\n' * text.count('\n', m.start(), close + 1))
        pos = close + 1
    out.append(text[pos:])
    return ''.join(out)


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

    text = rewrite_asm(text, path)
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


def write_if_changed(dest: pathlib.Path, text: str) -> None:
    if not dest.exists() or dest.read_text() != text:
        dest.write_text(text)


def main() -> None:
    args = sys.argv[1:]
    if len(args) < 2:
        raise SystemExit(__doc__)
    out = pathlib.Path(args.pop(0))
    out.mkdir(parents=True, exist_ok=True)
    if args[0] == '--headers':
        for header in sorted(pathlib.Path(args[1]).glob('*.cuh')):
            text = rewrite_asm(header.read_text(), str(header))
            write_if_changed(out / header.name, f'#line 1 "{header.resolve()}"\n{text}')
        args = args[2:]
    for unit in args:
        src = pathlib.Path(unit)
        text, names = rewrite(src.read_text(), str(src))
        body = ['#include "cuda_emu_kernel.h"', f'#line 1 "{src.resolve()}"', text, '']
        body += [f'EMU_KERNEL({n})' for n in names]
        write_if_changed(out / (src.stem + '.emu.cpp'), '\n'.join(body) + '\n')
        print(f'{src.name}: {len(names)} kernels: {" ".join(names)}')


if __name__ == '__main__':
    main()
