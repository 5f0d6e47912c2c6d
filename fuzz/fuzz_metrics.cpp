// libFuzzer target: a run's metrics.jsonl as `capsnet plot` reads it, then
// drawn (the tick and range code once looped forever on near-equal values).
#include "capsnet/viz/figure.h"
#include "fuzz_util.h"

#include <sstream>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::istringstream in(std::string(reinterpret_cast<const char*>(data), size));
  try {
    const auto panels = capsnet::viz::training_curves(in, "metrics.jsonl");
    capsnet::viz::write_plot_png(capsnet::fuzz::scratch_path("plot.png"), "fuzz", panels);
  } catch (const std::invalid_argument&) {
  }
  return 0;
}
