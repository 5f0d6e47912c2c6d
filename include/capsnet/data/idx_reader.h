#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace capsnet {

/// A problem with a user's data file: the message names the file and what is wrong.
class DataError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// An unsigned-byte IDX array (the MNIST file format): dims and row-major data.
struct IdxArray {
  std::vector<int64_t> dims; ///< the size of each dimension, outermost first
  std::vector<uint8_t> data; ///< the elements, row-major: the product of dims
};

/// Reads an IDX file of unsigned bytes, raw or gzip-compressed (detected from
/// the content, not the name). Checks the magic, the element type, the rank
/// (`expected_rank`), that the header's sizes match the data exactly, and
/// gzip integrity. Never allocates more than the file can hold.
/// Throws DataError naming `path` and the problem.
IdxArray read_idx(const std::string& path, int expected_rank);

/// Whether the file starts as read_idx expects: gzip data, or the raw IDX
/// magic of unsigned bytes (00 00 08). Tells IDX files from pictures.
bool looks_like_idx(const std::string& path);

/// Writes `array` as an IDX file of unsigned bytes, gzip-compressed when `gzip`.
void write_idx(const std::string& path, const IdxArray& array, bool gzip = false);

} // namespace capsnet
