#include "capsnet/recipes/errors.h"

#include "capsnet/data/idx_reader.h"
#include "capsnet/dist/process_group.h"
#include "capsnet/engine/checkpoint.h"
#include "capsnet/engine/step.h"
#include "capsnet/image/image.h"
#include "capsnet/io/atomic_file.h"

#include <c10/util/Exception.h>

#include <stdexcept>

namespace capsnet {

std::string error_message(const std::exception& e) {
  const std::string what = e.what();
  // The most derived first: DistributedError is a TrainingError.
  if (dynamic_cast<const DataError*>(&e)) return "data error: " + what;
  if (dynamic_cast<const ImageError*>(&e)) return "image error: " + what;
  if (dynamic_cast<const CheckpointError*>(&e)) return "checkpoint error: " + what;
  if (dynamic_cast<const dist::DistributedError*>(&e)) {
    return "distributed training stopped: " + what +
           "\nlast.pt in the run directory holds the last finished epoch (or the last "
           "interruption); continue with: capsnet train --resume RUN_DIR";
  }
  if (dynamic_cast<const TrainingError*>(&e)) return "training error: " + what;
  if (dynamic_cast<const WriteError*>(&e)) return "write error: " + what;
  if (dynamic_cast<const std::invalid_argument*>(&e)) return "invalid option: " + what;
  if (const auto* c10 = dynamic_cast<const c10::Error*>(&e)) {
    return "internal error: " + std::string(c10->what_without_backtrace());
  }
  return "error: " + what;
}

} // namespace capsnet
