// libFuzzer target: training options as config.json and checkpoints store
// them, read back and validated (bounds before any model is built).
#include "capsnet/registry/options.h"

#include <nlohmann/json.hpp>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto json = nlohmann::json::parse(data, data + size, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded()) return 0;
  try {
    const auto options = capsnet::train_options_from_json(json);
    // What was accepted round-trips.
    if (nlohmann::json(capsnet::train_options_from_json(nlohmann::json(options))) !=
        nlohmann::json(options)) {
      __builtin_trap();
    }
  } catch (const std::invalid_argument&) {
  } catch (const nlohmann::json::exception&) {
  }
  return 0;
}
