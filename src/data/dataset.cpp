#include "capsnet/data/dataset.h"

#include "capsnet/data/folder.h"
#include "capsnet/data/idx_reader.h"
#include "capsnet/data/registry.h"

#include <c10/util/Exception.h>

#include <zlib.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>

namespace capsnet {

namespace fs = std::filesystem;

Dataset load_dataset(const std::string& dir, Split split, const std::string& name,
                     int64_t limit) {
  DataRequest request;
  request.dir = dir;
  request.split = split;
  request.limit = limit;
  return load_dataset(name, request);
}

namespace {

std::string find_file(const std::string& dir, const std::string& base, const std::string& hint) {
  for (const auto& candidate : {base, base + ".gz"}) {
    auto path = (fs::path(dir) / candidate).string();
    if (fs::exists(path)) return path;
  }
  auto how = hint;
  if (const auto at = how.find("DIR"); at != std::string::npos) how.replace(at, 3, dir);
  throw DataError((fs::path(dir) / base).string() + ": not found (nor " + base + ".gz); " + how);
}

} // namespace

Dataset load_idx_dataset(const std::string& dir, Split split, int64_t num_classes,
                         const std::string& fetch_hint, int64_t limit) {
  const std::string prefix = split == Split::kTrain ? "train" : "t10k";
  const auto images_path = find_file(dir, prefix + "-images-idx3-ubyte", fetch_hint);
  const auto labels_path = find_file(dir, prefix + "-labels-idx1-ubyte", fetch_hint);
  auto images = read_idx(images_path, 3);
  auto labels = read_idx(labels_path, 1);
  if (images.dims[0] != labels.dims[0]) {
    throw DataError(images_path + " holds " + std::to_string(images.dims[0]) + " images but " +
                    labels_path + " holds " + std::to_string(labels.dims[0]) + " labels");
  }
  if (images.dims[0] == 0) {
    throw DataError(images_path + ": holds no images; the file is damaged, fetch the data set again");
  }
  if (images.dims[1] != images.dims[2]) {
    throw DataError(images_path + ": images are " + std::to_string(images.dims[1]) + "x" +
                    std::to_string(images.dims[2]) + ", expected square images");
  }
  Dataset data;
  data.num_classes = num_classes;
  for (size_t i = 0; i < labels.data.size(); ++i) {
    if (labels.data[i] >= data.num_classes) {
      throw DataError(labels_path + ": label " + std::to_string(labels.data[i]) + " at index " +
                      std::to_string(i) + " is out of range [0, " +
                      std::to_string(data.num_classes) + ")");
    }
  }
  int64_t n = images.dims[0];
  if (limit > 0 && limit < n) n = limit;
  const auto side = images.dims[1];
  data.images = at::from_blob(images.data.data(), {n, 1, side, side}, at::kByte).clone();
  data.labels = at::from_blob(labels.data.data(), {n}, at::kByte).to(at::kLong);
  return data;
}

namespace {

// zlib's crc32 takes uInt lengths: feed it in pieces.
uLong crc32_add(uLong crc, const uint8_t* bytes, size_t size) {
  for (size_t at = 0; at < size; at += size_t{1} << 30) {
    crc = crc32(crc, bytes + at, static_cast<uInt>(std::min(size - at, size_t{1} << 30)));
  }
  return crc;
}

} // namespace

uint32_t crc32_of(const void* bytes, size_t size) {
  return static_cast<uint32_t>(
      crc32_add(crc32(0L, Z_NULL, 0), static_cast<const uint8_t*>(bytes), size));
}

int64_t Dataset::side() const {
  return folder && !images.defined() ? folder->side : images.size(2);
}

int64_t Dataset::channels() const {
  return folder && !images.defined() ? folder->channels : images.size(1);
}

at::Tensor Dataset::pixels(const at::Tensor& indices) const {
  if (images.defined()) return images.index_select(0, on_device(indices, images.device()));
  TORCH_CHECK(folder && folder->files, "a data set without images");
  return folder->files->load(on_device(indices, at::kCPU));
}

std::string data_identity(const Dataset& data) {
  if (data.folder) return data.folder->identity;
  const auto images = data.images.to(at::kCPU).contiguous();
  const auto labels = data.labels.to(at::kCPU, at::kByte).contiguous();
  uLong crc = crc32(0L, Z_NULL, 0);
  crc = crc32_add(crc, images.data_ptr<uint8_t>(), images.numel());
  crc = crc32_add(crc, labels.data_ptr<uint8_t>(), labels.numel());
  char text[160];
  std::snprintf(text, sizeof text, "%lld images %lldx%lld, %lld classes, crc %08lx",
                static_cast<long long>(data.size()), static_cast<long long>(images.size(2)),
                static_cast<long long>(images.size(3)), static_cast<long long>(data.num_classes),
                static_cast<unsigned long>(crc));
  return text;
}

at::Tensor shift_images(const at::Tensor& images, const std::vector<int64_t>& dy,
                        const std::vector<int64_t>& dx) {
  TORCH_CHECK(images.dim() == 4, "expected images [B, C, H, W], got ", images.sizes());
  const auto batch = images.size(0), channels = images.size(1);
  const auto height = images.size(2), width = images.size(3);
  TORCH_CHECK(static_cast<int64_t>(dy.size()) == batch && static_cast<int64_t>(dx.size()) == batch,
              "expected one shift per image");
  int64_t reach = 0;
  auto shifts = at::empty({2, batch}, at::kLong);
  auto* s = shifts.data_ptr<int64_t>();
  for (int64_t b = 0; b < batch; ++b) {
    // A shift past the border leaves the image blank, as one of the border's does.
    s[b] = std::clamp<int64_t>(dy[b], -height, height);
    s[batch + b] = std::clamp<int64_t>(dx[b], -width, width);
    reach = std::max({reach, std::abs(s[b]), std::abs(s[batch + b])});
  }
  if (reach == 0) return images.clone();
  // out[b, c, y, x] = padded[b, c, y + reach - dy[b], x + reach - dx[b]].
  const auto padded = at::constant_pad_nd(images, {reach, reach, reach, reach}, 0);
  const auto on = on_device(shifts, images.device());
  const auto index = at::TensorOptions(images.device()).dtype(at::kLong);
  const auto rows = (at::arange(height, index) + reach).unsqueeze(0) - on[0].unsqueeze(1);
  const auto cols = (at::arange(width, index) + reach).unsqueeze(0) - on[1].unsqueeze(1);
  const auto taken = padded.gather(
      2, rows.view({batch, 1, height, 1}).expand({batch, channels, height, width + 2 * reach}));
  return taken.gather(3, cols.view({batch, 1, 1, width}).expand({batch, channels, height, width}));
}

at::Tensor on_device(const at::Tensor& tensor, c10::Device device) {
  if (tensor.device() == device) return tensor;
  if (tensor.is_cpu() && device.is_cuda()) {
    return tensor.pin_memory().to(device, /*non_blocking=*/true);
  }
  return tensor.to(device);
}

at::Tensor random_shift(const at::Tensor& images, int64_t max_shift, std::mt19937_64& rng) {
  std::uniform_int_distribution<int64_t> offset(-max_shift, max_shift);
  std::vector<int64_t> dy(images.size(0)), dx(images.size(0));
  for (size_t b = 0; b < dy.size(); ++b) {
    dy[b] = offset(rng);
    dx[b] = offset(rng);
  }
  return shift_images(images, dy, dx);
}

at::Tensor prepare_batch(const at::Tensor& images, int64_t max_shift, bool normalize,
                         std::mt19937_64& rng) {
  auto x = images.to(at::kFloat).div_(255.0);
  if (max_shift > 0) x = random_shift(x, max_shift, rng);
  if (normalize) x = standardize(x);
  return x;
}

at::Tensor standardize(const at::Tensor& unit_pixels) {
  return (unit_pixels - kMnistMean) / kMnistStd;
}

at::Tensor standardize(const at::Tensor& unit_pixels, const std::vector<double>& mean,
                       const std::vector<double>& std) {
  if (mean.empty() || std.empty()) return standardize(unit_pixels);
  const auto channels = unit_pixels.size(1);
  TORCH_CHECK(int64_t(mean.size()) == channels && int64_t(std.size()) == channels,
              "standardize: statistics of ", mean.size(), " channels for images of ", channels);
  const auto opts = at::TensorOptions(unit_pixels.device()).dtype(at::kDouble);
  const auto m = at::tensor(mean, opts).to(unit_pixels.scalar_type()).view({1, channels, 1, 1});
  const auto s = at::tensor(std, opts).to(unit_pixels.scalar_type()).view({1, channels, 1, 1});
  return (unit_pixels - m) / s;
}

} // namespace capsnet
