#include "capsnet/data/idx_reader.h"

#include "capsnet/io/atomic_file.h"

#include <zlib.h>

#include <cstdio>
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
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, "cannot open file (does it exist and is it readable?)");
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

bool is_gzip(const uint8_t* bytes, size_t size) {
  return size >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b;
}

bool is_raw_idx(const uint8_t* bytes, size_t size) {
  return size >= 3 && bytes[0] == 0 && bytes[1] == 0 && bytes[2] == kUnsignedByte;
}

std::vector<uint8_t> gunzip(const std::string& path, const std::vector<uint8_t>& compressed) {
  z_stream stream{};
  // 16 + MAX_WBITS: expect a gzip header and trailer (checks the CRC).
  if (inflateInit2(&stream, 16 + MAX_WBITS) != Z_OK) fail(path, "cannot initialise zlib");
  std::unique_ptr<z_stream, int (*)(z_stream*)> guard(&stream, inflateEnd);
  stream.next_in = const_cast<Bytef*>(compressed.data());
  stream.avail_in = static_cast<uInt>(compressed.size());
  std::vector<uint8_t> out;
  uint8_t chunk[1 << 16];
  int status = Z_OK;
  while (status != Z_STREAM_END) {
    stream.next_out = chunk;
    stream.avail_out = sizeof(chunk);
    status = inflate(&stream, Z_NO_FLUSH);
    if (status != Z_OK && status != Z_STREAM_END) {
      fail(path, std::string("corrupt gzip data (") + (stream.msg ? stream.msg : "truncated") +
                     "); delete the file and fetch it again");
    }
    out.insert(out.end(), chunk, chunk + (sizeof(chunk) - stream.avail_out));
    if (out.size() > kMaxElements) fail(path, "decompresses to more than 4 GiB: not an IDX file");
    if (status == Z_OK && stream.avail_in == 0 && stream.avail_out != 0) {
      fail(path, "gzip stream is truncated; delete the file and fetch it again");
    }
  }
  return out;
}

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
  auto bytes = read_file(path);
  if (is_gzip(bytes.data(), bytes.size())) bytes = gunzip(path, bytes);
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
  if (bytes.size() < header) fail(path, "truncated IDX header");
  IdxArray array;
  uint64_t count = 1;
  for (int d = 0; d < rank; ++d) {
    const uint32_t size = read_be32(bytes.data() + 4 + 4 * d);
    count *= size;
    if (count > kMaxElements) fail(path, "header sizes claim more than 4 GiB of data");
    array.dims.push_back(size);
  }
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
