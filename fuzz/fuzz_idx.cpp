// libFuzzer target: the IDX reader on raw and gzip files. The first byte
// chooses how the rest reaches read_idx: as the file's bytes (raw IDX, or
// gzip data when it starts 1f 8b), or gzip-compressed here first, so that
// the fuzzer reaches the reader behind a valid gzip container too.
#include "capsnet/data/idx_reader.h"
#include "fuzz_util.h"

#include <zlib.h>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const auto path = capsnet::fuzz::scratch_path("idx");
  const bool compress = data[0] & 1;
  if (compress) {
    gzFile out = gzopen(path.c_str(), "wb1");
    gzwrite(out, data + 1, static_cast<unsigned>(size - 1));
    gzclose(out);
  } else {
    capsnet::fuzz::write_file(path, data + 1, size - 1);
  }
  for (int rank : {1, 3}) {
    try {
      const auto array = capsnet::read_idx(path, rank);
      uint64_t count = 1;
      for (auto d : array.dims) count *= static_cast<uint64_t>(d);
      if (count != array.data.size()) __builtin_trap(); // the reader's promise
    } catch (const capsnet::DataError&) {
    }
  }
  return 0;
}
