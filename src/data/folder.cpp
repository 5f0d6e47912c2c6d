#include "capsnet/data/folder.h"

#include "capsnet/data/batch.h"
#include "capsnet/data/idx_reader.h"
#include "capsnet/image/image.h"

#include <ATen/Parallel.h>

#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <filesystem>
#include <random>
#include <set>
#include <sstream>
#include <stdexcept>

namespace capsnet {

namespace fs = std::filesystem;

void FolderOptions::validate() const {
  auto require = [](bool ok, const std::string& message) {
    if (!ok) throw std::invalid_argument(message);
  };
  require(std::isfinite(test_fraction) && test_fraction > 0 && test_fraction < 1,
          "--test-fraction must be in (0, 1), got " + std::to_string(test_fraction));
  require(channels == 0 || channels == 1 || channels == 3,
          "--channels must be auto, 1 or 3, got " + std::to_string(channels));
  require(image_size >= 0 && image_size <= 1024,
          "--image-size must be in [8, 1024] (0: auto), got " + std::to_string(image_size));
  require(image_size == 0 || image_size >= 8,
          "--image-size must be in [8, 1024] (0: auto), got " + std::to_string(image_size));
  require(crop >= 0 && (crop == 0 || crop >= 8),
          "--crop must be at least 8 (0: the image size), got " + std::to_string(crop));
  require(image_size == 0 || crop <= image_size, "--crop " + std::to_string(crop) +
                                                     " is larger than --image-size " +
                                                     std::to_string(image_size));
  require(loader_threads >= 0 && loader_threads <= 64,
          "--loader-threads must be in [0, 64], got " + std::to_string(loader_threads));
  require(cache_mb >= 0 && cache_mb <= (int64_t(1) << 20),
          "--cache-mb must be in [0, 1048576], got " + std::to_string(cache_mb));
}

bool has_picture_extension(const std::string& name) {
  auto ext = fs::path(name).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  static const std::set<std::string> known = {".png", ".jpg", ".jpeg", ".bmp",
                                              ".gif", ".pgm", ".ppm",  ".pnm"};
  return known.count(ext) > 0;
}

namespace {

bool hidden(const fs::path& path) {
  return path.filename().string().rfind('.', 0) == 0;
}

// The sub-folders of `dir` (links to folders included), sorted by name.
std::vector<std::string> class_folders(const fs::path& dir) {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& entry :
       fs::directory_iterator(dir, fs::directory_options::skip_permission_denied, ec)) {
    if (!hidden(entry.path()) && entry.is_directory(ec))
      names.push_back(entry.path().filename().string());
  }
  if (ec) throw DataError(dir.string() + ": cannot be listed: " + ec.message());
  std::sort(names.begin(), names.end());
  return names;
}

struct Listed {
  std::string path;  // relative to the root
  uint64_t bytes = 0;
  int64_t mtime = 0;
};

// Every picture under `dir`, recursively, following links to folders once
// (a link back into the tree is passed over). Sorted by path.
class TreeWalker {
 public:
  TreeWalker(const fs::path& root, std::vector<std::string>& skipped)
      : root_(root), skipped_(skipped) {}

  std::vector<Listed> walk(const fs::path& dir) {
    std::vector<Listed> files;
    visit(dir, files);
    std::sort(files.begin(), files.end(),
              [](const Listed& a, const Listed& b) { return a.path < b.path; });
    return files;
  }

 private:
  std::string relative(const fs::path& path) const {
    return path.lexically_relative(root_).string();
  }

  void visit(const fs::path& dir, std::vector<Listed>& files) {
    struct stat st {};
    if (::stat(dir.c_str(), &st) != 0) return;
    if (!seen_.insert({st.st_dev, st.st_ino}).second) {
      skipped_.push_back(relative(dir) + ": a link back to a folder already listed (a loop)");
      return;
    }
    std::error_code ec;
    for (const auto& entry :
         fs::directory_iterator(dir, fs::directory_options::skip_permission_denied, ec)) {
      const auto& path = entry.path();
      if (hidden(path)) continue;  // .DS_Store, .git, editors' files
      std::error_code type_ec;
      if (entry.is_directory(type_ec)) {
        visit(path, files);
        continue;
      }
      if (!entry.exists(type_ec)) {
        skipped_.push_back(relative(path) + ": a broken link");
        continue;
      }
      if (!entry.is_regular_file(type_ec)) {
        skipped_.push_back(relative(path) + ": not a regular file");
        continue;
      }
      if (!has_picture_extension(path.string())) {
        skipped_.push_back(relative(path) +
                           ": not a picture by its name (PNG, JPEG, BMP, GIF, PGM/PPM)");
        continue;
      }
      Listed file{relative(path), entry.file_size(type_ec), 0};
      if (file.bytes == 0) {
        skipped_.push_back(relative(path) + ": the file is empty");
        continue;
      }
      file.mtime = static_cast<int64_t>(entry.last_write_time(type_ec).time_since_epoch().count());
      files.push_back(std::move(file));
    }
    if (ec) skipped_.push_back(relative(dir) + ": cannot be listed: " + ec.message());
  }

  fs::path root_;
  std::vector<std::string>& skipped_;
  std::set<std::pair<dev_t, ino_t>> seen_;
};

std::string identity_of(const std::string& root, const std::vector<std::string>& classes,
                        const std::vector<Listed>& files, const std::vector<int64_t>& labels) {
  std::string text;
  for (const auto& name : classes) text += name + '\n';
  for (size_t k = 0; k < files.size(); ++k) {
    text += files[k].path + '\0' + std::to_string(files[k].bytes) + '\0' +
            std::to_string(files[k].mtime) + '\0' + std::to_string(labels[k]) + '\n';
  }
  char crc[16];
  std::snprintf(crc, sizeof crc, "%08x", crc32_of(text.data(), text.size()));
  return "folder " + root + ": " + std::to_string(files.size()) + " files, " +
         std::to_string(classes.size()) + " classes, list crc " + crc;
}

// Both splits' files of one class folder, each list sorted.
struct ClassFiles {
  std::vector<Listed> train, test;
};

std::string join_first(const std::vector<std::string>& items, size_t count) {
  std::string out;
  for (size_t k = 0; k < items.size() && k < count; ++k) out += (k ? ", " : "") + items[k];
  if (items.size() > count) out += ", ... (" + std::to_string(items.size() - count) + " more)";
  return out;
}

void require_classes(const fs::path& dir, const std::vector<std::string>& classes) {
  if (classes.empty()) {
    throw DataError(dir.string() +
                    ": no class folders; --dataset folder takes one sub-folder per "
                    "class (DIR/CLASS/picture.png, or DIR/train/CLASS/... and "
                    "DIR/test/CLASS/...)");
  }
  if (classes.size() == 1) {
    throw DataError(dir.string() + ": only one class folder (" + classes[0] +
                    "); a classifier needs at least two classes");
  }
}

// Stratified: round(fraction * n) of each class's files (at least one, and
// at least one left for training), drawn from the seed and the class.
void split_class(std::vector<Listed> files, double fraction, uint64_t seed, int64_t label,
                 ClassFiles& out) {
  std::mt19937_64 rng(splitmix64(seed ^ splitmix64(0x5eed5911ULL + static_cast<uint64_t>(label))));
  std::shuffle(files.begin(), files.end(), rng);
  const auto n = static_cast<int64_t>(files.size());
  const int64_t held = std::clamp<int64_t>(std::llround(fraction * n), 1, n - 1);
  out.test.assign(files.begin(), files.begin() + held);
  out.train.assign(files.begin() + held, files.end());
  auto by_path = [](const Listed& a, const Listed& b) { return a.path < b.path; };
  std::sort(out.test.begin(), out.test.end(), by_path);
  std::sort(out.train.begin(), out.train.end(), by_path);
}

// A recorded split: the named files are the test split.
void split_as_recorded(const std::vector<Listed>& files, const std::set<std::string>& test,
                       ClassFiles& out) {
  for (const auto& file : files) (test.count(file.path) ? out.test : out.train).push_back(file);
}

void add_split(FolderListing& listing, const std::vector<ClassFiles>& per_class) {
  std::vector<Listed> train, test;
  std::vector<int64_t> train_labels, test_labels;
  for (size_t label = 0; label < per_class.size(); ++label) {
    for (const auto& file : per_class[label].train) {
      listing.train.push_back({file.path, int64_t(label)});
      train.push_back(file);
      train_labels.push_back(int64_t(label));
    }
    for (const auto& file : per_class[label].test) {
      listing.test.push_back({file.path, int64_t(label)});
      test.push_back(file);
      test_labels.push_back(int64_t(label));
    }
  }
  listing.train_identity = identity_of(listing.root, listing.classes, train, train_labels);
  listing.test_identity = identity_of(listing.root, listing.classes, test, test_labels);
}

}  // namespace

FolderListing list_image_folder(const std::string& dir, double test_fraction, uint64_t seed,
                                const std::vector<std::string>& test_files) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    throw DataError(dir +
                    ": no such folder; --dataset folder --data DIR takes a folder with one "
                    "sub-folder of pictures per class");
  }
  FolderListing listing;
  listing.root = dir;
  const fs::path root(dir);
  const bool has_train = fs::is_directory(root / "train", ec),
             has_test = fs::is_directory(root / "test", ec);
  if (has_train != has_test) {
    throw DataError((root / (has_train ? "test" : "train")).string() + ": missing; a folder with " +
                    (has_train ? "train/" : "test/") + " needs " +
                    (has_train ? "test/" : "train/") +
                    " beside it (or neither: DIR/CLASS/... split by --test-fraction)");
  }
  TreeWalker walker(root, listing.skipped);
  std::vector<ClassFiles> per_class;
  if (has_train) {
    listing.split_folders = true;
    listing.split = "the train/ and test/ folders";
    listing.classes = class_folders(root / "train");
    require_classes(root / "train", listing.classes);
    const auto test_classes = class_folders(root / "test");
    for (const auto& name : test_classes) {
      if (!std::binary_search(listing.classes.begin(), listing.classes.end(), name)) {
        throw DataError((root / "test" / name).string() + ": class '" + name +
                        "' is not in train/; the classes of test/ must be those of train/");
      }
    }
    for (const auto& name : listing.classes) {
      if (!std::binary_search(test_classes.begin(), test_classes.end(), name)) {
        throw DataError((root / "test" / name).string() + ": missing; class '" + name +
                        "' of train/ has no test pictures");
      }
      ClassFiles files{walker.walk(root / "train" / name), walker.walk(root / "test" / name)};
      for (const auto& [part, list] : {std::pair{"train", &files.train}, {"test", &files.test}}) {
        if (list->empty()) {
          throw DataError((root / part / name).string() + ": the class folder holds no pictures");
        }
      }
      per_class.push_back(std::move(files));
    }
  } else {
    listing.classes = class_folders(root);
    require_classes(root, listing.classes);
    const std::set<std::string> recorded(test_files.begin(), test_files.end());
    std::ostringstream how;
    how << (recorded.empty() ? "" : "as the checkpoint recorded: ")
        << std::llround(test_fraction * 100) << "% of each class held out for testing (seed "
        << seed << ")";
    listing.split = how.str();
    for (size_t label = 0; label < listing.classes.size(); ++label) {
      const auto& name = listing.classes[label];
      auto files = walker.walk(root / name);
      if (files.size() < 2) {
        throw DataError((root / name).string() + ": the class folder holds " +
                        (files.empty() ? "no pictures" : "one picture") +
                        "; a split for testing needs at least two per class");
      }
      ClassFiles split;
      if (recorded.empty()) {
        split_class(std::move(files), test_fraction, seed, int64_t(label), split);
      } else {
        split_as_recorded(files, recorded, split);
      }
      per_class.push_back(std::move(split));
    }
    if (!recorded.empty()) {
      size_t found = 0;
      for (const auto& c : per_class) found += c.test.size();
      if (found != recorded.size()) {
        std::vector<std::string> gone;
        for (const auto& path : recorded) {
          if (!fs::exists(root / path, ec)) gone.push_back(path);
        }
        throw DataError(dir + ": " + std::to_string(recorded.size() - found) + " of the " +
                        std::to_string(recorded.size()) +
                        " test files the checkpoint recorded are "
                        "gone (" +
                        join_first(gone, 3) +
                        "); evaluate on the folder the model "
                        "was trained on");
      }
    }
  }
  add_split(listing, per_class);
  return listing;
}

ImageFiles::ImageFiles(std::vector<std::string> paths, at::Tensor cache, int64_t channels,
                       int64_t side, int workers)
    : paths_(std::move(paths)),
      cache_(std::move(cache)),
      channels_(channels),
      side_(side),
      workers_(std::max(0, workers)) {}

ImageFiles::~ImageFiles() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (pending_.valid()) pending_.wait();
}

namespace {

// One picture file decoded as the folder's images are stored, uint8
// [C, side, side]; decoding errors name it `name`.
at::Tensor decode_file(const std::string& path, int64_t channels, int64_t side,
                       const std::string& name) {
  const auto picture =
      resize_and_crop(decode_picture(read_image_bytes(path), name, static_cast<int>(channels)),
                      static_cast<int>(side));
  return picture_tensor(picture);
}

std::vector<int64_t> index_list(const at::Tensor& indices) {
  const auto cpu = indices.to(at::kCPU, at::kLong).contiguous();
  return {cpu.data_ptr<int64_t>(), cpu.data_ptr<int64_t>() + cpu.numel()};
}

}  // namespace

at::Tensor ImageFiles::decode(const std::vector<int64_t>& indices) const {
  const auto n = static_cast<int64_t>(indices.size());
  auto out = at::empty({n, channels_, side_, side_}, at::kByte);
  auto slice = [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      const auto k = indices[b];
      TORCH_CHECK(k >= 0 && k < size(), "image index ", k, " is outside [0, ", size(), ")");
      if (k < cached()) {
        out[b].copy_(cache_[k]);
        continue;
      }
      try {
        out[b].copy_(decode_file(paths_[k], channels_, side_, paths_[k]));
      } catch (const ImageError& e) {
        throw DataError(std::string(e.what()) +
                        " (it was readable when the run started; the "
                        "folder changed during training)");
      }
    }
  };
  const int64_t parts = std::clamp<int64_t>(std::min<int64_t>(workers_, n), 1, 64);
  std::vector<std::future<void>> running;
  for (int64_t p = 1; p < parts; ++p) {
    running.push_back(std::async(std::launch::async, slice, n * p / parts, n * (p + 1) / parts));
  }
  slice(0, n / parts);
  for (auto& part : running) part.get();
  return out;
}

at::Tensor ImageFiles::load(const at::Tensor& indices) const {
  const auto wanted = index_list(indices);
  std::shared_future<at::Tensor> ready;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (pending_.valid() && pending_indices_ == wanted) ready = pending_;
    pending_ = {};
    pending_indices_.clear();
  }
  return ready.valid() ? ready.get() : decode(wanted);
}

void ImageFiles::prefetch(const at::Tensor& indices) const {
  if (workers_ == 0) return;
  auto wanted = index_list(indices);
  std::lock_guard<std::mutex> lock(mutex_);
  if (pending_.valid()) pending_.wait();
  pending_indices_ = wanted;
  pending_ = std::async(std::launch::async, [this, wanted]() { return decode(wanted); }).share();
}

namespace {

// The first `limit` files drawn across the classes from the seed, in order.
std::vector<ImageFile> limited(std::vector<ImageFile> files, int64_t limit, uint64_t seed) {
  if (limit <= 0 || limit >= static_cast<int64_t>(files.size())) return files;
  std::vector<size_t> order(files.size());
  std::iota(order.begin(), order.end(), 0);
  std::mt19937_64 rng(splitmix64(seed ^ 0x11417ULL));
  std::shuffle(order.begin(), order.end(), rng);
  order.resize(static_cast<size_t>(limit));
  std::sort(order.begin(), order.end());
  std::vector<ImageFile> kept;
  for (const auto k : order) kept.push_back(std::move(files[k]));
  return kept;
}

// Whether a picture whose file stores colour shows any: a channel differing
// from another by more than a JPEG's rounding (grey pictures saved as RGB, as
// stb's JPEG writer saves every picture, are grey).
bool shows_colour(const std::string& path) {
  const auto picture = decode_picture(read_image_bytes(path), path, 3);
  for (size_t i = 0; i + 2 < picture.pixels.size(); i += 3) {
    const int r = picture.pixels[i], g = picture.pixels[i + 1], b = picture.pixels[i + 2];
    if (std::abs(r - g) > 4 || std::abs(g - b) > 4) return true;
  }
  return false;
}

// --channels auto and --image-size auto from the training files' headers:
// colour when any file shows colour, the median of the shorter sides.
void resolve_automatic(FolderOptions& options, const FolderListing& listing) {
  if (options.channels != 0 && options.image_size != 0) return;
  const auto n = static_cast<int64_t>(listing.train.size());
  std::vector<int> sides(n, 0);
  std::atomic<bool> found_colour{false};
  at::parallel_for(0, n, 64, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) {
      const auto path = (fs::path(listing.root) / listing.train[k].path).string();
      try {
        PictureInfo info;
        try {
          info = picture_info(read_image_bytes(path, 64 << 10), path);
        } catch (const ImageError&) {  // a header beyond the first 64 KiB (JPEG's EXIF)
          info = picture_info(read_image_bytes(path), path);
        }
        sides[k] = std::min(info.width, info.height);
        // Stored as colour: look at the pixels, until one picture shows colour.
        if (options.channels == 0 && info.colour && !found_colour && shows_colour(path)) {
          found_colour = true;
        }
      } catch (const ImageError&) {
        // decoding skips and reports it
      }
    }
  });
  std::vector<int> known;
  for (const auto side : sides) {
    if (side > 0) known.push_back(side);
  }
  if (known.empty()) {
    throw DataError(listing.root + ": none of the " + std::to_string(n) +
                    " training files is a picture this program reads");
  }
  if (options.channels == 0) options.channels = found_colour ? 3 : 1;
  if (options.image_size == 0) {
    std::sort(known.begin(), known.end());
    const auto m = known.size();
    const double median = m % 2 ? known[m / 2] : (known[m / 2 - 1] + known[m / 2]) / 2.0;
    options.image_size = std::clamp<int64_t>(std::llround(median), 8, 1024);
  }
}

// Every file decoded once, in parallel: kept in `cache` up to its size,
// counted into the per-channel sums, or listed as skipped.
struct DecodePass {
  at::Tensor cache;  // uint8 [K, C, S, S]
  std::vector<char> ok;
  std::vector<std::string> failed;
  std::vector<double> sum, sum_squares;
  int64_t pixels = 0;
};

DecodePass decode_all(const FolderListing& listing, const std::vector<ImageFile>& files,
                      int64_t channels, int64_t side, int64_t cache_mb) {
  const auto n = static_cast<int64_t>(files.size());
  const int64_t per_image = channels * side * side;
  const int64_t capacity = std::min<int64_t>(n, (cache_mb << 20) / per_image);
  DecodePass pass;
  pass.cache = at::empty({capacity, channels, side, side}, at::kByte);
  pass.ok.assign(n, 0);
  pass.sum.assign(channels, 0.0);
  pass.sum_squares.assign(channels, 0.0);
  std::vector<std::string> reasons(n);
  std::mutex sums;
  at::parallel_for(0, n, 16, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) {
      const auto& relative = files[k].path;
      at::Tensor image;
      try {
        image = decode_file((fs::path(listing.root) / relative).string(), channels, side, relative);
      } catch (const ImageError& e) {
        std::string why = e.what();
        const auto full = (fs::path(listing.root) / relative).string();
        if (why.rfind(full, 0) == 0) why = relative + why.substr(full.size());
        reasons[k] = why;
        continue;
      }
      pass.ok[k] = 1;
      if (k < capacity) pass.cache[k].copy_(image);
      const auto unit = image.to(at::kDouble).div_(255.0).view({channels, -1});
      const auto s = unit.sum(1), q = unit.pow(2).sum(1);
      std::lock_guard<std::mutex> lock(sums);
      for (int64_t c = 0; c < channels; ++c) {
        pass.sum[c] += s[c].item<double>();
        pass.sum_squares[c] += q[c].item<double>();
      }
      pass.pixels += side * side;
    }
  });
  for (const auto& why : reasons) {
    if (!why.empty()) pass.failed.push_back(why);
  }
  return pass;
}

std::string classes_text(const std::vector<std::string>& classes) {
  return join_first(classes, 6);
}

}  // namespace

Dataset load_folder(const std::string& dir, Split split, const FolderRequest& request) {
  request.options.validate();
  const auto listing =
      list_image_folder(dir, request.options.test_fraction, request.seed, request.test_files);
  auto options = request.options;
  resolve_automatic(options, listing);
  if (options.crop > options.image_size) {
    throw DataError(dir + ": --crop " + std::to_string(options.crop) + " is larger than the " +
                    "images' size " + std::to_string(options.image_size));
  }
  auto files =
      limited(split == Split::kTrain ? listing.train : listing.test, request.limit, request.seed);
  const auto pass =
      decode_all(listing, files, options.channels, options.image_size, options.cache_mb);

  auto info = std::make_shared<FolderSplit>();
  info->root = dir;
  info->identity = split == Split::kTrain ? listing.train_identity : listing.test_identity;
  info->split = listing.split;
  if (!listing.split_folders) {
    for (const auto& file : listing.test) info->test_files.push_back(file.path);
  }
  if (split == Split::kTrain) info->skipped = listing.skipped;  // the listing's, said once
  info->skipped.insert(info->skipped.end(), pass.failed.begin(), pass.failed.end());
  info->side = options.image_size;
  info->channels = options.channels;
  for (int64_t c = 0; c < options.channels && pass.pixels > 0; ++c) {
    const double mean = pass.sum[c] / pass.pixels;
    const double var = std::max(0.0, pass.sum_squares[c] / pass.pixels - mean * mean);
    info->mean.push_back(mean);
    info->std.push_back(std::max(std::sqrt(var), 1e-3));
  }
  if (request.options.strict && !info->skipped.empty()) {
    throw DataError(dir + ": " + std::to_string(info->skipped.size()) +
                    " files cannot be used (--strict): " + join_first(info->skipped, 5));
  }

  std::vector<int64_t> kept, labels;
  std::vector<std::string> paths;
  for (size_t k = 0; k < files.size(); ++k) {
    if (!pass.ok[k]) continue;
    kept.push_back(static_cast<int64_t>(k));
    labels.push_back(files[k].label);
    paths.push_back((fs::path(dir) / files[k].path).string());
  }
  if (kept.empty()) {
    throw DataError(dir + ": none of the " + std::to_string(files.size()) + " " +
                    (split == Split::kTrain ? "training" : "test") +
                    " files is a picture this program reads (" + join_first(pass.failed, 3) + ")");
  }
  Dataset data;
  data.num_classes = static_cast<int64_t>(listing.classes.size());
  data.class_names = listing.classes;
  data.labels = at::tensor(labels, at::kLong);
  const auto index = at::tensor(kept, at::kLong);
  const int64_t capacity = pass.cache.size(0);
  if (capacity >= static_cast<int64_t>(files.size())) {
    data.images = pass.cache.index_select(0, index);
  } else {
    const auto cached = index.lt(capacity);
    info->files = std::make_shared<ImageFiles>(
        std::move(paths), pass.cache.index_select(0, index.masked_select(cached)), options.channels,
        options.image_size, static_cast<int>(options.loader_threads));
  }
  data.folder = info;
  if (request.log) {
    auto& log = *request.log;
    log << dir << ": " << data.num_classes << " classes (" << classes_text(listing.classes) << "), "
        << data.size() << " " << (split == Split::kTrain ? "training" : "test") << " pictures; "
        << listing.split << "; " << options.image_size << "x" << options.image_size << ", "
        << options.channels << (options.channels == 1 ? " channel" : " channels") << "; ";
    if (info->files) {
      log << info->files->cached() << " held in memory (--cache-mb " << options.cache_mb
          << "), the rest decoded for each batch\n";
    } else {
      char size[32];
      std::snprintf(size, sizeof size, "%.1f MiB", data.images.numel() / 1048576.0);
      log << "all held in memory (" << size << ")\n";
    }
    if (!info->skipped.empty()) {
      log << "skipped " << info->skipped.size()
          << " files that are not usable pictures: " << join_first(info->skipped, 5)
          << " (--strict makes this an error)\n";
    }
  }
  return data;
}

}  // namespace capsnet
