#include "capsnet/data/dataset.h"
#include "capsnet/data/registry.h"
#include "capsnet/data/idx_reader.h"
#include "test_util.h"

#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>

namespace capsnet {
namespace {

void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

// Header for a rank-3 array of 2 images of 2x3 pixels, then its 12 bytes.
std::vector<uint8_t> tiny_images() {
  std::vector<uint8_t> bytes = {0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 3};
  for (uint8_t k = 0; k < 12; ++k) bytes.push_back(k * 20);
  return bytes;
}

// Expects read_idx(path, rank) to throw a DataError naming the file and `what`.
void expect_data_error(const std::string& path, int rank, const std::string& what) {
  try {
    read_idx(path, rank);
    FAIL() << "no error for " << path;
  } catch (const DataError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find(path), std::string::npos) << message;
    EXPECT_NE(message.find(what), std::string::npos) << message;
  }
}

class IdxReader : public ::testing::Test {
 protected:
  std::string dir = testing::temp_dir("idx");
  std::string file(const std::string& name) { return dir + "/" + name; }
};

TEST_F(IdxReader, ReadsRawAndGzipFilesAlike) {
  write_bytes(file("raw"), tiny_images());
  IdxArray original{{2, 2, 3}, {}};
  for (uint8_t k = 0; k < 12; ++k) original.data.push_back(k * 20);
  write_idx(file("packed.gz"), original, /*gzip=*/true);
  for (const auto& name : {"raw", "packed.gz"}) {
    auto array = read_idx(file(name), 3);
    EXPECT_EQ(array.dims, (std::vector<int64_t>{2, 2, 3}));
    EXPECT_EQ(array.data, original.data);
  }
  // The gz file really is compressed, not raw bytes with a .gz name.
  EXPECT_EQ(read_bytes(file("packed.gz"))[0], 0x1f);
}

TEST_F(IdxReader, RejectsMissingFile) {
  expect_data_error(file("absent"), 3, "no such file");
}

TEST_F(IdxReader, RejectsEmptyFile) {
  write_bytes(file("empty"), {});
  expect_data_error(file("empty"), 3, "too short");
}

TEST_F(IdxReader, RejectsWrongMagic) {
  auto bytes = tiny_images();
  bytes[0] = 0x50;
  write_bytes(file("magic"), bytes);
  expect_data_error(file("magic"), 3, "bad magic");
}

TEST_F(IdxReader, RejectsWrongElementType) {
  auto bytes = tiny_images();
  bytes[2] = 0x0d; // float
  write_bytes(file("type"), bytes);
  expect_data_error(file("type"), 3, "element type 0x0d");
}

TEST_F(IdxReader, RejectsWrongRank) {
  write_bytes(file("rank"), tiny_images());
  expect_data_error(file("rank"), 1, "rank 3, expected 1");
}

TEST_F(IdxReader, RejectsTruncatedData) {
  auto bytes = tiny_images();
  bytes.resize(bytes.size() - 5);
  write_bytes(file("short"), bytes);
  expect_data_error(file("short"), 3, "truncated");
  bytes.resize(10); // inside the header
  write_bytes(file("header"), bytes);
  expect_data_error(file("header"), 3, "truncated IDX header");
}

TEST_F(IdxReader, RejectsHeaderThatDisagreesWithTheData) {
  auto bytes = tiny_images();
  bytes.push_back(7); // one byte more than the header says
  write_bytes(file("long"), bytes);
  expect_data_error(file("long"), 3, "disagree");
}

TEST_F(IdxReader, RejectsHugeHeaderWithoutAllocating) {
  std::vector<uint8_t> bytes = {0, 0, 8, 3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                0, 0, 0, 9, 1, 2, 3};
  write_bytes(file("huge"), bytes);
  expect_data_error(file("huge"), 3, "more than 4 GiB");
}

TEST_F(IdxReader, RejectsCorruptAndTruncatedGzip) {
  IdxArray array{{4, 28, 28}, std::vector<uint8_t>(4 * 28 * 28, 0)};
  for (size_t k = 0; k < array.data.size(); ++k) array.data[k] = static_cast<uint8_t>(k * 7919 % 251);
  write_idx(file("good.gz"), array, true);
  auto bytes = read_bytes(file("good.gz"));
  auto corrupt = bytes;
  for (size_t k = 20; k < 60; ++k) corrupt[k] ^= 0x5a;
  write_bytes(file("corrupt.gz"), corrupt);
  expect_data_error(file("corrupt.gz"), 3, "corrupt gzip");
  auto truncated = bytes;
  truncated.resize(bytes.size() / 2);
  write_bytes(file("truncated.gz"), truncated);
  expect_data_error(file("truncated.gz"), 3, "gzip");
}

TEST_F(IdxReader, RefusesFilesThatAreNotRegular) {
  // /dev/zero, directly or through a link, would be read without end.
  expect_data_error("/dev/zero", 3, "not a regular file");
  std::filesystem::create_symlink("/dev/zero", file("zero-link"));
  expect_data_error(file("zero-link"), 3, "not a regular file");
  expect_data_error(dir, 3, "not a regular file");
}

TEST_F(IdxReader, GzipIsInflatedOnlyAsFarAsTheHeaderDeclares) {
  // A gzip bomb: a header declaring 12 bytes of images, then 256 MiB of zeros
  // (1 MB compressed). Once the whole stream was inflated before the header
  // was looked at; now reading stops one byte past the declared data.
  const auto path = file("bomb.gz");
  gzFile out = gzopen(path.c_str(), "wb1");
  ASSERT_NE(out, nullptr);
  const auto header = tiny_images();
  gzwrite(out, header.data(), static_cast<unsigned>(header.size()));
  const std::vector<uint8_t> zeros(1 << 20, 0);
  for (int k = 0; k < 256; ++k) gzwrite(out, zeros.data(), static_cast<unsigned>(zeros.size()));
  ASSERT_EQ(gzclose(out), Z_OK);
  // In a child process, whose peak memory starts at its size at fork.
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    auto peak_kib = [] {
      rusage usage{};
      getrusage(RUSAGE_SELF, &usage);
      return usage.ru_maxrss;
    };
    const long before = peak_kib();
    bool refused = false;
    try {
      read_idx(path, 3);
    } catch (const DataError& e) {
      refused = std::string(e.what()).find("disagree") != std::string::npos;
    }
    const long grown = peak_kib() - before;
    ::_exit(refused ? (grown < 32 * 1024 ? 0 : 2) : 1);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_NE(WEXITSTATUS(status), 1) << "no 'disagree' error for the bomb";
  EXPECT_NE(WEXITSTATUS(status), 2) << "reading the bomb grew the peak memory by 32 MiB or more";
}

class DatasetLoading : public ::testing::Test {
 protected:
  std::string dir = testing::temp_dir("dataset");
};

TEST_F(DatasetLoading, LoadsImagesAndLabelsAndHonoursLimit) {
  testing::write_tiny_dataset(dir, 25, 28, /*gzip=*/true);
  auto data = load_dataset(dir, Split::kTrain, "mnist");
  EXPECT_EQ(data.images.sizes(), (at::IntArrayRef{25, 1, 28, 28}));
  EXPECT_EQ(data.images.scalar_type(), at::kByte);
  EXPECT_EQ(data.labels[13].item<int64_t>(), 3);
  EXPECT_EQ(load_dataset(dir, Split::kTest, "mnist", 10).size(), 10);
}

TEST_F(DatasetLoading, MissingFilesSayHowToFetchThem) {
  try {
    load_dataset(dir, Split::kTrain, "mnist");
    FAIL();
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("train-images-idx3-ubyte"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("scripts/fetch-mnist.sh"), std::string::npos);
  }
}

TEST_F(DatasetLoading, RejectsCountMismatchAndLabelsOutOfRange) {
  testing::write_tiny_dataset(dir, 12, 28);
  write_idx(dir + "/train-labels-idx1-ubyte", IdxArray{{11}, std::vector<uint8_t>(11, 1)});
  try {
    load_dataset(dir, Split::kTrain, "mnist");
    FAIL();
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("holds 12 images but"), std::string::npos) << e.what();
  }
  std::vector<uint8_t> labels(12, 1);
  labels[5] = 10;
  write_idx(dir + "/train-labels-idx1-ubyte", IdxArray{{12}, labels});
  try {
    load_dataset(dir, Split::kTrain, "mnist");
    FAIL();
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("label 10 at index 5 is out of range"), std::string::npos)
        << e.what();
  }
}

TEST_F(DatasetLoading, ZeroImagesGetAClearError) {
  // Once: divisions by zero written as null in metrics.jsonl.
  write_idx(dir + "/train-images-idx3-ubyte", IdxArray{{0, 28, 28}, {}});
  write_idx(dir + "/train-labels-idx1-ubyte", IdxArray{{0}, {}});
  try {
    load_dataset(dir, Split::kTrain, "mnist");
    FAIL();
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("holds no images"), std::string::npos) << e.what();
  }
}

TEST(DataIdentity, NamesSizeAndContent) {
  Dataset a;
  a.images = at::zeros({3, 1, 4, 4}, at::kByte);
  a.labels = at::tensor({1, 2, 3}, at::kLong);
  Dataset b = a;
  b.images = a.images.clone();
  b.images[2][0][3][3] = 1; // one pixel
  EXPECT_EQ(data_identity(a).rfind("3 images 4x4, 10 classes, crc ", 0), 0u) << data_identity(a);
  EXPECT_NE(data_identity(a), data_identity(b));
  EXPECT_EQ(data_identity(a), data_identity(Dataset(a)));
}

TEST(FashionMnist, LoadsDebiansGzipFiles) {
  const auto dir = dataset_info("fashion-mnist").default_dir;
#ifdef CAPSNET_PACKED_DEPS
  // A build from the packed folder runs where Debian's package may be absent
  // (the GPU machine); the Debian builds insist on it.
  if (!std::filesystem::exists(dir)) GTEST_SKIP() << dir << " missing (Debian's dataset-fashion-mnist)";
#endif
  ASSERT_TRUE(std::filesystem::exists(dir)) << dir << " missing: scripts/install-deps.sh installs it";
  auto train = load_dataset(dir, Split::kTrain, "fashion-mnist");
  auto test = load_dataset(dir, Split::kTest, "fashion-mnist");
  EXPECT_EQ(train.images.sizes(), (at::IntArrayRef{60000, 1, 28, 28}));
  EXPECT_EQ(test.size(), 10000);
  // Every class holds 6,000 training images.
  EXPECT_TRUE(at::bincount(train.labels).equal(at::full({10}, 6000, at::kLong)));
}

TEST(Shift, MovesPixelsAndFillsWithZeros) {
  auto image = at::arange(1, 10, at::kFloat).view({1, 1, 3, 3});
  // Down one row, left one column: row 0 is empty, column 2 is empty.
  auto shifted = shift_images(image, {1}, {-1});
  auto expected = at::tensor({0, 0, 0, 2, 3, 0, 5, 6, 0}, at::kFloat).view({1, 1, 3, 3});
  EXPECT_TRUE(shifted.equal(expected));
  EXPECT_TRUE(shift_images(image, {0}, {0}).equal(image));
  EXPECT_EQ(shift_images(image, {3}, {0}).abs().sum().item<float>(), 0.0f);
}

TEST(Shift, GathersWhatALiteralLoopCopies) {
  torch::manual_seed(5);
  const auto images = at::randn({6, 3, 7, 5});
  const std::vector<int64_t> dy = {0, 2, -3, 7, -1, 9}, dx = {1, -4, 0, 2, -5, -9};
  const auto shifted = shift_images(images, dy, dx);
  auto expected = at::zeros_like(images);
  for (int64_t b = 0; b < 6; ++b) {
    for (int64_t y = 0; y < 7; ++y) {
      for (int64_t x = 0; x < 5; ++x) {
        const int64_t from_y = y - dy[b], from_x = x - dx[b];
        if (from_y < 0 || from_y >= 7 || from_x < 0 || from_x >= 5) continue;
        expected.select(0, b).select(1, y).select(1, x).copy_(
            images.select(0, b).select(1, from_y).select(1, from_x));
      }
    }
  }
  EXPECT_TRUE(shifted.equal(expected));
}

TEST(Shift, RandomShiftStaysWithinRangeAndCoversIt) {
  auto images = at::zeros({400, 1, 9, 9});
  images.select(2, 4).select(2, 4).fill_(1.0); // one bright pixel in the centre
  std::mt19937_64 rng(3);
  auto shifted = random_shift(images, 2, rng);
  std::set<std::pair<int64_t, int64_t>> seen;
  for (int64_t b = 0; b < 400; ++b) {
    auto position = shifted[b][0].flatten().argmax().item<int64_t>();
    EXPECT_EQ(shifted[b].sum().item<float>(), 1.0f); // never shifted out at 2 of 4
    seen.insert({position / 9 - 4, position % 9 - 4});
  }
  EXPECT_EQ(seen.size(), 25u); // every (dy, dx) in [-2, 2]^2, nothing else
  for (auto [dy, dx] : seen) {
    EXPECT_LE(std::abs(dy), 2);
    EXPECT_LE(std::abs(dx), 2);
  }
  std::mt19937_64 again(3);
  EXPECT_TRUE(random_shift(images, 2, again).equal(shifted));
}

TEST(PrepareBatch, ScalesToUnitRangeOrStandardises) {
  auto images = at::tensor({0, 255, 51}, at::kByte).view({1, 1, 1, 3});
  std::mt19937_64 rng(0);
  auto plain = prepare_batch(images, 0, false, rng);
  EXPECT_TRUE(at::allclose(plain, at::tensor({0.0f, 1.0f, 0.2f}).view({1, 1, 1, 3})));
  auto normalised = prepare_batch(images, 0, true, rng);
  EXPECT_TRUE(at::allclose(normalised, (plain - kMnistMean) / kMnistStd));
}

} // namespace
} // namespace capsnet
