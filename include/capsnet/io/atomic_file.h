#pragma once

#include <functional>
#include <vector>
#include <stdexcept>
#include <string>
#include <string_view>

namespace capsnet {

/// A file that could not be written; the message names it and the cause.
class WriteError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Writes `path` so that it either keeps its old content or holds the whole
/// new one, even if the process or the machine dies midway: `write` fills a
/// temporary file in the same directory, which is flushed to disk (fsync),
/// renamed over `path`, and the directory is flushed too. The one helper for
/// every file capsnet writes (checkpoints, exports, figures, metrics).
/// `write` receives the temporary path and writes it however it likes (a
/// LibTorch archive, cairo, stb); an exception from it removes the temporary
/// and propagates. Throws WriteError when the file system refuses.
void write_file_atomically(const std::string& path,
                           const std::function<void(const std::string& temporary)>& write);

/// The same for bytes already in memory.
void write_file_atomically(const std::string& path, std::string_view bytes);

/// Appends `text` to the file at `path` (created if absent) atomically: the
/// result is the old content plus `text`, or the old content. For small logs
/// such as metrics.jsonl; the whole file is rewritten.
void append_file_atomically(const std::string& path, std::string_view text);

/// Throws WriteError naming both when `output` is the same file as one of
/// `inputs`, compared by identity (device and inode), so that another
/// spelling, a hard link or a symbolic link is caught too. A command checks
/// each output against its inputs before any work, so that it never writes
/// over what it reads. Paths that do not exist match nothing.
void check_not_an_input(const std::string& output, const std::vector<std::string>& inputs);

/// Before any work: no output is one of `inputs` (check_not_an_input) and no
/// two outputs name the same file (std::invalid_argument). Empty paths are
/// outputs not asked for.
void check_outputs(const std::vector<std::string>& outputs, const std::vector<std::string>& inputs);

/// The regular files directly inside `dir` (for checks against a data directory).
std::vector<std::string> files_in(const std::string& dir);

} // namespace capsnet
