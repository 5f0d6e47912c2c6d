#include "capsnet/io/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>

namespace capsnet {

namespace fs = std::filesystem;

namespace {

// fsync of a file or a directory; false (with errno) when the system refuses.
bool sync_path(const std::string& path, int flags) {
  const int fd = ::open(path.c_str(), flags | O_CLOEXEC);
  if (fd < 0) return false;
  const bool ok = ::fsync(fd) == 0 || errno == EINVAL; // EINVAL: the file system cannot sync
  ::close(fd);
  return ok;
}

// Unique per call, so concurrent writers of one path never share a temporary.
std::string temporary_for(const fs::path& target) {
  static thread_local std::mt19937_64 rng(std::random_device{}() ^ static_cast<uint64_t>(::getpid()));
  char suffix[24];
  std::snprintf(suffix, sizeof suffix, ".%016llx.tmp", static_cast<unsigned long long>(rng()));
  return (target.parent_path() / ("." + target.filename().string() + suffix)).string();
}

} // namespace

void write_file_atomically(const std::string& path,
                           const std::function<void(const std::string& temporary)>& write) {
  const fs::path target(path);
  if (target.filename().empty()) throw WriteError(path + ": not a file name");
  const auto temporary = temporary_for(target);
  try {
    write(temporary);
    if (!fs::exists(temporary)) throw WriteError(path + ": nothing was written");
    if (!sync_path(temporary, O_RDONLY)) {
      throw WriteError(path + ": cannot flush to disk: " + std::strerror(errno));
    }
    std::error_code ec;
    fs::rename(temporary, target, ec);
    if (ec) throw WriteError(path + ": cannot write: " + ec.message());
  } catch (...) {
    std::error_code ignored;
    fs::remove(temporary, ignored);
    throw;
  }
  const auto dir = target.parent_path().empty() ? fs::path(".") : target.parent_path();
  sync_path(dir.string(), O_RDONLY | O_DIRECTORY); // best effort: the rename is done
}

void write_file_atomically(const std::string& path, std::string_view bytes) {
  write_file_atomically(path, [&](const std::string& temporary) {
    std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.flush();
    if (!out) {
      throw WriteError(path + ": cannot write (disk full, or no permission in its directory?)");
    }
  });
}

void append_file_atomically(const std::string& path, std::string_view text) {
  std::string content;
  if (std::ifstream in{path, std::ios::binary}) {
    content.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  content.append(text);
  write_file_atomically(path, content);
}

void check_outputs(const std::vector<std::string>& outputs, const std::vector<std::string>& inputs) {
  namespace fs = std::filesystem;
  for (size_t k = 0; k < outputs.size(); ++k) {
    if (outputs[k].empty()) continue;
    check_not_an_input(outputs[k], inputs);
    for (size_t j = 0; j < k; ++j) {
      if (!outputs[j].empty() && fs::weakly_canonical(outputs[j]) == fs::weakly_canonical(outputs[k])) {
        throw std::invalid_argument(outputs[k] + " is named for two outputs; give each its own path");
      }
    }
  }
}

void check_not_an_input(const std::string& output, const std::vector<std::string>& inputs) {
  struct stat out_stat {};
  if (::stat(output.c_str(), &out_stat) != 0) return; // not there yet
  for (const auto& input : inputs) {
    struct stat in_stat {};
    if (::stat(input.c_str(), &in_stat) == 0 && in_stat.st_dev == out_stat.st_dev &&
        in_stat.st_ino == out_stat.st_ino) {
      throw WriteError(output + ": this output is the input " + input +
                       "; writing it would destroy the input. Choose another output path");
    }
  }
}

std::vector<std::string> files_in(const std::string& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->is_regular_file(ec)) out.push_back(it->path().string());
  }
  return out;
}

} // namespace capsnet
