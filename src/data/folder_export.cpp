#include "capsnet/data/folder_export.h"

#include "capsnet/data/registry.h"
#include "capsnet/image/image.h"
#include "capsnet/io/atomic_file.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <stdexcept>

namespace capsnet {

namespace {

namespace fs = std::filesystem;

// The folder a class's pictures go to: its name, made safe for a file system.
std::string folder_name(const DatasetInfo& info, int64_t k) {
  std::string name =
      k < static_cast<int64_t>(info.class_names.size()) ? info.class_names[k] : std::to_string(k);
  for (auto& c : name) {
    if (c == '/' || c == '\0') c = '-';
  }
  return name;
}

int64_t export_split(const DatasetInfo& info, const FolderExportOptions& o, Split split) {
  const auto name = split == Split::kTrain ? "train" : "test";
  auto data =
      load_dataset(o.data_dir, split, info.name, split == Split::kTrain ? o.limit : o.test_limit);
  const auto source = make_source(info, data, split, 0, false, c10::Device(c10::kCPU));
  const int64_t n = source->size(), chunk = 1000;
  int64_t written = 0;
  for (int64_t begin = 0; begin < n; begin += chunk) {
    const auto batch =
        source->get(at::arange(begin, std::min(n, begin + chunk), at::kLong), nullptr);
    for (int64_t b = 0; b < batch.size(); ++b) {
      const auto dir = fs::path(o.out) / name / folder_name(info, batch.labels[b].item<int64_t>());
      fs::create_directories(dir);
      char file[32];
      std::snprintf(file, sizeof file, "%05lld.%s", static_cast<long long>(begin + b),
                    o.format == "png" ? "png" : "jpg");
      // Plain writes: a new tree of many small files, where a rename and an
      // fsync per file (write_png) would take most of the time.
      const auto picture = tensor_picture(batch.images[b]);
      const auto bytes = o.format == "png" ? encode_png(picture) : encode_jpeg(picture, 95);
      std::ofstream stream(dir / file, std::ios::binary);
      stream.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
      if (!stream) throw WriteError((dir / file).string() + ": cannot be written");
      ++written;
    }
    if (o.log && o.terminal) *o.log << "\r" << name << ": " << written << "/" << n << std::flush;
  }
  if (o.log) {
    *o.log << (o.terminal ? "\r" : "") << name << ": " << written << " pictures in "
           << (fs::path(o.out) / name).string() << std::endl;
  }
  return written;
}

} // namespace

int64_t export_folder(const FolderExportOptions& o) {
  const auto& info = dataset_info(o.dataset);
  if (info.folder) {
    throw std::invalid_argument("--dataset folder is a folder already; export-folder writes the "
                                "other data sets as folders");
  }
  if (info.labels_per_image != 1) {
    throw std::invalid_argument(info.name + " has " + std::to_string(info.labels_per_image) +
                                " labels per image, and a folder tree holds one class per "
                                "picture; export another data set");
  }
  if (o.format != "png" && o.format != "jpeg") {
    throw std::invalid_argument("--format must be png or jpeg, got '" + o.format + "'");
  }
  std::error_code ec;
  if (fs::exists(o.out, ec) && (!fs::is_directory(o.out, ec) || !fs::is_empty(o.out, ec)) &&
      !o.force) {
    throw std::invalid_argument(o.out + " exists and is not an empty folder; choose another "
                                        "--out, or pass --force to write into it");
  }
  fs::create_directories(o.out);
  return export_split(info, o, Split::kTrain) + export_split(info, o, Split::kTest);
}

} // namespace capsnet
