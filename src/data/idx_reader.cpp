#include "capsnet/data/idx_reader.h"

#include "capsnet/io/atomic_file.h"

#include <zlib.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>

namespace capsnet {

namespace {

constexpr uint8_t kUnsignedByte = 0x08;
constexpr int kMaxRank = 4;
// Larger than any data set this tool reads; a header or stream that claims more is corrupt.
constexpr uint64_t kMaxElements = uint64_t{1} << 32;

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw DataError(path + ": " + what);
}

std::vector<uint8_t> read_file(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) fail(path, "no such file");
  // A device (/dev/zero) or a pipe would be read without end.
  if (!std::filesystem::is_regular_file(path, ec)) {
    fail(path, "not a regular file (a directory, device or pipe); pass an IDX file");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, "cannot open file (is it readable?)");
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

bool is_gzip(const uint8_t* bytes, size_t size) {
  return size >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b;
}

bool is_raw_idx(const uint8_t* bytes, size_t size) {
  return size >= 3 && bytes[0] == 0 && bytes[1] == 0 && bytes[2] == kUnsignedByte;
}

// A gzip file's content, inflated only as far as asked: the header first,
// then exactly the data it declares (and one byte more, which must not exist),
// so that a header claiming millions of images costs nothing until the bytes
// are really there.
class Gunzip {
 public:
  Gunzip(const std::string& path, const std::vector<uint8_t>& compressed) : path_(path) {
    // 16 + MAX_WBITS: expect a gzip header and trailer (checks the CRC).
    if (inflateInit2(&stream_, 16 + MAX_WBITS) != Z_OK) fail(path, "cannot initialise zlib");
    stream_.next_in = const_cast<Bytef*>(compressed.data());
    stream_.avail_in = static_cast<uInt>(compressed.size());
  }
  ~Gunzip() { inflateEnd(&stream_); }
  Gunzip(const Gunzip&) = delete;
  Gunzip& operator=(const Gunzip&) = delete;

  /// Inflates into `out` until it holds `size` bytes or the stream ends.
  void fill(std::vector<uint8_t>& out, size_t size) {
    uint8_t chunk[1 << 16];
    while (out.size() < size && !ended_) {
      const size_t want = std::min(sizeof(chunk), size - out.size());
      stream_.next_out = chunk;
      stream_.avail_out = static_cast<uInt>(want);
      const int status = inflate(&stream_, Z_NO_FLUSH);
      const size_t got = want - stream_.avail_out;
      out.insert(out.end(), chunk, chunk + got);
      if (status == Z_STREAM_END) {
        ended_ = true;
      } else if (status == Z_BUF_ERROR || (status == Z_OK && got == 0 && stream_.avail_in == 0)) {
        fail(path_, "gzip stream is truncated; delete the file and fetch it again");
      } else if (status != Z_OK) {
        fail(path_, std::string("corrupt gzip data (") + (stream_.msg ? stream_.msg : "error") +
                        "); delete the file and fetch it again");
      }
    }
  }

 private:
  std::string path_;
  z_stream stream_{};
  bool ended_ = false;
};

uint32_t read_be32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

} // namespace

bool looks_like_idx(const std::string& path) {
  uint8_t head[4] = {1, 1, 1, 1};
  std::ifstream in(path, std::ios::binary);
  in.read(reinterpret_cast<char*>(head), sizeof head);
  const auto got = static_cast<size_t>(in.gcount());
  return is_gzip(head, got) || is_raw_idx(head, got);
}

IdxArray read_idx(const std::string& path, int expected_rank) {
  auto file = read_file(path);
  std::vector<uint8_t> bytes;
  std::unique_ptr<Gunzip> gzip;
  if (is_gzip(file.data(), file.size())) {
    gzip = std::make_unique<Gunzip>(path, file);
  } else {
    bytes = std::move(file);
  }
  auto need = [&](uint64_t size) { // the first `size` bytes, where they exist
    if (gzip) gzip->fill(bytes, static_cast<size_t>(size));
  };
  need(4);
  if (bytes.size() < 4) fail(path, "file is too short for an IDX header (" +
                                       std::to_string(bytes.size()) + " bytes)");
  if (bytes[0] != 0 || bytes[1] != 0) fail(path, "bad magic number: not an IDX file");
  if (bytes[2] != kUnsignedByte) {
    char type[8];
    std::snprintf(type, sizeof(type), "0x%02x", bytes[2]);
    fail(path, std::string("element type ") + type + " is not unsigned byte (0x08)");
  }
  const int rank = bytes[3];
  if (rank != expected_rank) {
    fail(path, "has rank " + std::to_string(rank) + ", expected " +
                   std::to_string(expected_rank) + " (images are rank 3, labels rank 1)");
  }
  if (rank < 1 || rank > kMaxRank) fail(path, "unsupported rank " + std::to_string(rank));
  const size_t header = 4 + 4 * static_cast<size_t>(rank);
  need(header);
  if (bytes.size() < header) fail(path, "truncated IDX header");
  IdxArray array;
  uint64_t count = 1;
  for (int d = 0; d < rank; ++d) {
    const uint32_t size = read_be32(bytes.data() + 4 + 4 * d);
    count *= size;
    if (count > kMaxElements) fail(path, "header sizes claim more than 4 GiB of data");
    array.dims.push_back(size);
  }
  need(header + count + 1); // one byte past the declared data: there must be none
  const uint64_t payload = bytes.size() - header;
  if (payload < count) {
    fail(path, "truncated: header promises " + std::to_string(count) + " bytes of data, file has " +
                   std::to_string(payload) + "; delete it and fetch it again");
  }
  if (payload > count) {
    fail(path, "header sizes (" + std::to_string(count) + " bytes) disagree with the data (" +
                   std::to_string(payload) + " bytes)");
  }
  array.data.assign(bytes.begin() + static_cast<std::ptrdiff_t>(header), bytes.end());
  return array;
}

void write_idx(const std::string& path, const IdxArray& array, bool gzip) {
  std::vector<uint8_t> bytes = {0, 0, kUnsignedByte, static_cast<uint8_t>(array.dims.size())};
  for (auto d : array.dims) {
    const auto size = static_cast<uint32_t>(d);
    for (int shift = 24; shift >= 0; shift -= 8) bytes.push_back((size >> shift) & 0xff);
  }
  bytes.insert(bytes.end(), array.data.begin(), array.data.end());
  if (!gzip) {
    write_file_atomically(path, std::string_view(reinterpret_cast<const char*>(bytes.data()),
                                                 bytes.size()));
    return;
  }
  write_file_atomically(path, [&](const std::string& temporary) {
    gzFile file = gzopen(temporary.c_str(), "wb");
    if (!file) throw DataError(path + ": cannot open for writing");
    const bool ok = gzwrite(file, bytes.data(), static_cast<unsigned>(bytes.size())) ==
                    static_cast<int>(bytes.size());
    if (gzclose(file) != Z_OK || !ok) throw DataError(path + ": write failed");
  });
}

} // namespace capsnet
