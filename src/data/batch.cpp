#include "capsnet/data/batch.h"

#include "capsnet/data/digit_augment.h"
#include "capsnet/data/folder.h"
#include "capsnet/data/registry.h"

#include <c10/util/Exception.h>

#include <algorithm>
#include <map>
#include <numeric>
#include <stdexcept>

namespace capsnet {

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

std::mt19937_64 example_stream(uint64_t seed, int64_t index) {
  return std::mt19937_64(splitmix64(seed ^ splitmix64(static_cast<uint64_t>(index) + 1)));
}


at::Tensor multi_hot(const at::Tensor& labels, int64_t num_classes) {
  TORCH_CHECK(labels.dim() == 1 || labels.dim() == 2, "expected labels [B] or [B, P], got ",
              labels.sizes());
  const auto rows = labels.dim() == 1 ? labels.unsqueeze(1) : labels;
  return at::zeros({labels.size(0), num_classes}, at::TensorOptions(labels.device()).dtype(at::kFloat))
      .scatter_(1, rows, 1.0);
}

DatasetSource::DatasetSource(Dataset data, const SourceOptions& options, c10::Device device)
    : data_(std::move(data)),
      max_shift_(options.shift),
      crop_(options.crop),
      normalize_(options.normalize),
      augment_(options.augment),
      digit_augment_(options.digit_augment),
      mean_(options.mean),
      std_(options.std),
      device_(device) {
  if (digit_augment_ && data_.images.defined() && data_.images.device() != device_) {
    host_images_ = data_.images;
  }
  if (data_.images.defined()) data_.images = data_.images.to(device_);
  data_.labels = data_.labels.to(device_);
  TORCH_CHECK(crop_ <= data_.side(), "a crop of ", crop_, " from images of ", data_.side());
}

DatasetSource::DatasetSource(Dataset data, int64_t max_shift, bool normalize, c10::Device device)
    : DatasetSource(std::move(data), SourceOptions{max_shift, normalize, {}, {}, 0, false},
                    device) {}

at::Tensor crop_images(const at::Tensor& images, int64_t side, std::mt19937_64* rng) {
  const auto height = images.size(2), width = images.size(3);
  if (side == height && side == width) return images;
  if (!rng) {
    return images.narrow(2, (height - side) / 2, side).narrow(3, (width - side) / 2, side);
  }
  std::uniform_int_distribution<int64_t> top(0, height - side), left(0, width - side);
  std::vector<at::Tensor> crops;
  for (int64_t b = 0; b < images.size(0); ++b) {
    const auto y = top(*rng), x = left(*rng);
    crops.push_back(images[b].narrow(1, y, side).narrow(2, x, side));
  }
  return at::stack(crops);
}

at::Tensor random_flip(const at::Tensor& images, std::mt19937_64& rng) {
  std::vector<int64_t> flipped;
  for (int64_t b = 0; b < images.size(0); ++b) {
    if (rng() & 1) flipped.push_back(b);
  }
  if (flipped.empty()) return images;
  auto out = images.clone();
  const auto which = on_device(at::tensor(flipped, at::kLong), images.device());
  out.index_copy_(0, which, images.index_select(0, which).flip({3}));
  return out;
}

void DatasetSource::prefetch(const at::Tensor& indices) const {
  if (!data_.images.defined() && data_.folder && data_.folder->files) {
    data_.folder->files->prefetch(indices);
  }
}

Batch DatasetSource::get(const at::Tensor& indices, std::mt19937_64* rng) const {
  // The digit augmentation runs on the CPU: the batch is gathered there and
  // goes to the device once, after it.
  const bool on_host = rng && digit_augment_;
  const auto first = on_host ? c10::Device(c10::kCPU) : device_;
  const auto pixels = on_host && host_images_.defined()
                          ? host_images_.index_select(0, on_device(indices, first))
                          : data_.pixels(indices);
  auto x = on_device(pixels, first).to(at::kFloat).div_(255.0);
  if (crop_ > 0) x = crop_images(x, crop_, rng && augment_ ? rng : nullptr);
  if (rng && augment_) x = random_flip(x, *rng);
  if (on_host) x = on_device(augment_digits(x, *rng), device_);
  if (rng && max_shift_ > 0) x = random_shift(x, max_shift_, *rng);
  if (normalize_) x = standardize(x, mean_, std_);
  Batch batch;
  batch.images = x;
  batch.labels = data_.labels.index_select(0, on_device(indices, data_.labels.device()));
  batch.targets = multi_hot(batch.labels, data_.num_classes);
  batch.recon_targets = batch.images;
  return batch;
}

Batch Batch::narrow(int64_t begin, int64_t count) const {
  Batch part;
  part.images = images.narrow(0, begin, count);
  part.labels = labels.narrow(0, begin, count);
  part.targets = targets.narrow(0, begin, count);
  part.recon_targets = recon_targets.narrow(0, begin, count);
  return part;
}

SubsetSource::SubsetSource(std::shared_ptr<const BatchSource> whole, std::vector<int64_t> indices)
    : whole_(std::move(whole)), indices_(std::move(indices)) {
  for (const auto index : indices_) {
    TORCH_CHECK(index >= 0 && index < whole_->size(), "example ", index,
                " is outside a source of ", whole_->size());
  }
  table_ = at::from_blob(indices_.data(), {size()}, at::kLong).clone();
}

at::Tensor SubsetSource::map(const at::Tensor& indices) const {
  return on_device(table_.index_select(0, on_device(indices, at::kCPU)), indices.device());
}

Batch SubsetSource::get(const at::Tensor& indices, std::mt19937_64* rng) const {
  return whole_->get(map(indices), rng);
}

void SubsetSource::prefetch(const at::Tensor& indices) const { whole_->prefetch(map(indices)); }

std::vector<int64_t> stratified_holdout(const at::Tensor& labels, int64_t count, uint64_t seed) {
  const auto first = (labels.dim() == 2 ? labels.select(1, 0) : labels).to(at::kCPU).contiguous();
  const int64_t n = first.numel();
  if (count < 0 || count >= n) {
    throw std::invalid_argument("--validation-split " + std::to_string(count) +
                                " must be below the " + std::to_string(n) +
                                " training examples, to leave some to train on");
  }
  std::map<int64_t, std::vector<int64_t>> by_class;
  const auto* label = first.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i) by_class[label[i]].push_back(i);
  // Each class's exact share, then the remaining examples to the largest remainders.
  std::vector<std::pair<double, int64_t>> remainders; // (-remainder, class): ties by class
  std::map<int64_t, int64_t> take;
  int64_t taken = 0;
  for (const auto& [k, members] : by_class) {
    const double share = static_cast<double>(count) * members.size() / n;
    take[k] = static_cast<int64_t>(share);
    taken += take[k];
    remainders.emplace_back(-(share - take[k]), k);
  }
  std::sort(remainders.begin(), remainders.end());
  for (size_t i = 0; taken < count; ++i, ++taken) ++take[remainders[i % remainders.size()].second];
  std::vector<int64_t> held;
  for (auto& [k, members] : by_class) {
    std::mt19937_64 rng(splitmix64(seed ^ splitmix64(0x7a11dULL + static_cast<uint64_t>(k))));
    std::shuffle(members.begin(), members.end(), rng);
    held.insert(held.end(), members.begin(),
                members.begin() + std::min<int64_t>(take[k], members.size()));
  }
  std::sort(held.begin(), held.end());
  return held;
}

std::vector<int64_t> complement(int64_t n, const std::vector<int64_t>& removed) {
  std::vector<int64_t> kept;
  kept.reserve(n - removed.size());
  size_t next = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (next < removed.size() && removed[next] == i) {
      ++next;
    } else {
      kept.push_back(i);
    }
  }
  return kept;
}

EpochSampler::EpochSampler(int64_t size, int64_t batch_size, uint64_t seed)
    : size_(size), batch_size_(batch_size), seed_(seed) {
  TORCH_CHECK(size > 0, "expected a non-empty data set");
  TORCH_CHECK(batch_size > 0, "expected a positive batch size, got ", batch_size);
}

at::Tensor EpochSampler::indices(int64_t epoch, int64_t step) const {
  return global_indices(epoch, step);
}

at::Tensor EpochSampler::global_indices(int64_t epoch, int64_t step) const {
  TORCH_CHECK(step >= 0 && step < steps_per_epoch(), "step ", step, " is outside the epoch's ",
              steps_per_epoch(), " steps");
  if (cached_epoch_ != epoch) {
    order_.resize(size_);
    std::iota(order_.begin(), order_.end(), 0);
    std::mt19937_64 rng(splitmix64(seed_ ^ splitmix64(static_cast<uint64_t>(epoch))));
    std::shuffle(order_.begin(), order_.end(), rng);
    cached_epoch_ = epoch;
  }
  const int64_t begin = step * batch_size_;
  const int64_t count = std::min(batch_size_, size_ - begin);
  return at::from_blob(order_.data() + begin, {count}, at::kLong).clone();
}

std::mt19937_64 EpochSampler::step_rng(int64_t epoch, int64_t step) const {
  return std::mt19937_64(splitmix64(seed_ ^ splitmix64(epoch * 1000003 + step + 1)));
}

ShardedSampler::ShardedSampler(int64_t size, int64_t global_batch_size, uint64_t seed,
                               int64_t rank, int64_t world)
    : EpochSampler(size, global_batch_size, seed), rank_(rank), world_(world) {
  TORCH_CHECK(world >= 1 && rank >= 0 && rank < world, "expected 0 <= rank < world, got rank ",
              rank, " of ", world);
}

std::pair<int64_t, int64_t> ShardedSampler::shard(int64_t n) const {
  const int64_t base = n / world_, extra = n % world_;
  return {rank_ * base + std::min(rank_, extra), base + (rank_ < extra ? 1 : 0)};
}

at::Tensor ShardedSampler::indices(int64_t epoch, int64_t step) const {
  const auto global = global_indices(epoch, step);
  const auto [begin, count] = shard(global.size(0));
  return global.narrow(0, begin, count);
}

} // namespace capsnet
