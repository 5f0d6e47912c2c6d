#include "capsnet/engine/progress.h"

#include <cstdio>

namespace capsnet {

std::string format_duration(double seconds) {
  const auto total = static_cast<int64_t>(seconds + 0.5);
  char text[32];
  if (total >= 3600) {
    std::snprintf(text, sizeof(text), "%ldh%02ldm", static_cast<long>(total / 3600),
                  static_cast<long>(total / 60 % 60));
  } else if (total >= 60) {
    std::snprintf(text, sizeof(text), "%ldm%02lds", static_cast<long>(total / 60),
                  static_cast<long>(total % 60));
  } else {
    std::snprintf(text, sizeof(text), "%lds", static_cast<long>(total));
  }
  return text;
}

ProgressPrinter::ProgressPrinter(std::ostream& out, bool terminal)
    : out_(out), terminal_(terminal), last_print_(std::chrono::steady_clock::now()) {}

void ProgressPrinter::update(int64_t epoch, int64_t epochs, int64_t step, int64_t steps,
                             double images_per_second, double loss, double accuracy,
                             double eta_seconds) {
  const auto now = std::chrono::steady_clock::now();
  const int64_t tenth = step * 10 / steps;
  if (!terminal_) {
    const bool minute = now - last_print_ >= std::chrono::seconds(60);
    if (tenth == last_tenth_ && !minute && step != steps) return;
  }
  last_tenth_ = tenth;
  last_print_ = now;
  char line[200];
  std::snprintf(line, sizeof(line),
                "epoch %ld/%ld  step %ld/%ld  %.1f img/s  loss %.4f  acc %.2f%%  ETA %s",
                static_cast<long>(epoch), static_cast<long>(epochs), static_cast<long>(step),
                static_cast<long>(steps), images_per_second, loss, 100.0 * accuracy,
                format_duration(eta_seconds).c_str());
  out_ << (terminal_ ? "\r\033[K" : "") << line;
  if (terminal_) {
    out_ << std::flush;
    line_open_ = true;
  } else {
    out_ << std::endl;
  }
}

void ProgressPrinter::finish() {
  if (line_open_) out_ << std::endl;
  line_open_ = false;
}

} // namespace capsnet
