#!/usr/bin/env bash
# capsnet bench as on an AVX2-only CPU without bf16: CTest runs this with
# ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 CAPSNET_NO_BF16=1 (see
# CMakeLists.txt). bench must run, name the machine and the limits, take the
# AVX2 kernels and report bf16 as unavailable, with no figure from a bf16 probe.
# Usage: bench_isa_test.sh CAPSNET
set -uo pipefail

capsnet=$1
source "$(dirname "$0")/test_lib.sh"
quick=(--batch-size 8 --steps 1 --warmup 0 --threads 2)

"$capsnet" bench "${quick[@]}" --json >"$work/fp32.json" 2>"$work/fp32.err"
check "bench runs as AVX2" test $? -eq 0
check "bench names the ISA limits" test "$(json_get "$work/fp32.json" \
  "'ONEDNN_MAX_CPU_ISA=AVX2' in j['cpu'] and 'ATEN_CPU_CAPABILITY=avx2' in j['cpu']")" = True
check "bench names the CPU model" test "$(json_get "$work/fp32.json" "len(j['cpu_model']) > 0")" = True
if grep -q avx2 /proc/cpuinfo && grep -q fma /proc/cpuinfo; then
  check "capsnet kernels limited to AVX2" test "$(json_get "$work/fp32.json" "j['kernel_isa']")" = AVX2
fi
check "OpenBLAS limited to its Haswell (AVX2) kernel" test "$(json_get "$work/fp32.json" "j['blas_core']")" = Haswell
check "fp32 convolution path named" test "$(json_get "$work/fp32.json" \
  "j['conv_path']")" = "Winograd F(2x2, 5x5) on the four phases + sgemm (OpenBLAS Haswell) in training, oneDNN forward in inference; conv1 (one input channel): im2col + sgemm"
check "no bf16 probe without bf16" test "$(json_get "$work/fp32.json" \
  "j['cpu_bf16'] == 'none' and j['bf16_matmul_probe_gflops'] is None and 'CAPSNET_NO_BF16' in j['bf16_unavailable_reason']")" = True

"$capsnet" bench "${quick[@]}" --precision bf16 >"$work/bf16.txt" 2>"$work/bf16.err"
check "bench --precision bf16 runs as AVX2" test $? -eq 0
check "bf16 falls back to fp32 with the reason" grep -q "CAPSNET_NO_BF16=1 is set; running in fp32 instead" "$work/bf16.err"
check "text output says bf16 is unavailable" grep -q "bf16 unavailable: CAPSNET_NO_BF16=1 is set" "$work/bf16.txt"
check "no percentage of a bf16 probe" bash -c "! grep -q 'of the bf16 probe' '$work/bf16.txt'"
check "text output names the paths" grep -q "primary-capsule convolution: Winograd F(2x2, 5x5) on the four phases + sgemm (OpenBLAS Haswell) in training" "$work/bf16.txt"
"$capsnet" bench "${quick[@]}" --conv mixed --json >"$work/mixed.json" 2>/dev/null
check "bench --conv mixed runs" test "$(json_get "$work/mixed.json" "j['conv_path']")" = \
  "oneDNN forward, im2col + sgemm backward (OpenBLAS Haswell)"

"$capsnet" bench "${quick[@]}" --conv onednn --json >"$work/onednn.json" 2>/dev/null
check "bench --conv onednn runs" test "$(json_get "$work/onednn.json" "j['conv_path']")" = "oneDNN convolution"
"$capsnet" bench "${quick[@]}" --conv im2col --json >"$work/im2col.json" 2>/dev/null
check "bench --conv im2col runs" test "$(json_get "$work/im2col.json" "j['conv_path']")" = "im2col + sgemm (OpenBLAS Haswell)"

echo "bench_as_avx2: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
