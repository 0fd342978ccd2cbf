#!/usr/bin/env python3
"""Instructions executed inside the CPU kernels, from a callgrind output file.

Usage: scripts/callgrind_kernels.py callgrind.out.N

Sums the inclusive cost of every call edge into a kernel-table entry point (gemm_float<F>,
gemm_q8, quantize_rows, layer_norm, activation, add, attention, sum and the conversions). The
backend calls them through function pointers, never from one another, so the sums are disjoint.
Instruction counts do not depend on machine load, which makes them the before/after measure on a
shared machine (docs/PERFORMANCE.md). valgrind cannot run AVX-512: force LLMSERVE_CPU_ISA=avx2 or
scalar.
"""
import re
import sys

ENTRY = re.compile(r"\(anonymous namespace\)::(gemm_float<\(llmserve::backend::WeightFormat\)\d>|"
                   r"gemm_float_formats|gemm_q8|quantize_rows|layer_norm|activation|add|attention|"
                   r"sum|f16_to_f32|bf16_to_f32|f32_to_f16)\(")


def main(path):
    names, cost, calls = {}, {}, {}
    caller = callee = ""
    call_count = 0
    pending_call = False
    total = 0

    def resolve(text):  # "(id) name" defines an id, "(id)" refers to one
        m = re.match(r"\((\d+)\)(?: (.*))?", text)
        if not m:
            return text
        if m.group(2) is not None:
            names[m.group(1)] = m.group(2)
        return names.get(m.group(1), "")

    for line in open(path, errors="replace"):
        line = line.rstrip("\n")
        if line.startswith("fn="):
            caller = resolve(line[3:])
        elif line.startswith("cfn="):
            callee = resolve(line[4:])
        elif line.startswith("calls="):
            pending_call, call_count = True, int(line[6:].split()[0])
        elif line.startswith(("summary:", "totals:")):
            total = int(line.split()[1])
        elif pending_call and line and (line[0].isdigit() or line[0] in "+-*"):
            pending_call = False  # the line after calls= holds the call's inclusive cost
            m = ENTRY.search(callee)
            if m and not ENTRY.search(caller):
                cost[m.group(1)] = cost.get(m.group(1), 0) + int(line.split()[1])
                calls[m.group(1)] = calls.get(m.group(1), 0) + call_count
    for name in sorted(cost):
        print(f"{name:50s} {cost[name]:>15,} {calls[name]:>9,} calls "
              f"{cost[name] / calls[name]:>12,.0f} per call")
    print(f"{'kernels total':50s} {sum(cost.values()):>15,}")
    print(f"{'program total':50s} {total:>15,}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
