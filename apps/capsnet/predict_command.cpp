#include "commands.h"

#include "capsnet/data/idx_reader.h"
#include "capsnet/engine/inference.h"
#include "capsnet/viz/image.h"
#include "capsnet/engine/runtime.h"
#include "capsnet/io/atomic_file.h"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>

namespace capsnet::cli {

namespace {

struct PredictFlags {
  std::string checkpoint;
  std::vector<std::string> files;
  std::string save_dir;
  ComputeFlags compute;
  bool json = false;
};

// The images of one input file: an IDX file of [N, H, W] images (used as
// they are, like MNIST's own) or one picture (preprocessed as MNIST was made).
struct Input {
  std::string name; ///< file, or file[k] for the k-th image of an IDX file
  at::Tensor image; ///< float [1, 1, H, W] in [0, 1]
};

std::vector<Input> read_inputs(const std::string& path, const Predictor& predictor) {
  if (!looks_like_idx(path))
    return {{path, predictor.prepare_picture(read_image_bytes(path), path)}};
  const auto side = predictor.sizes().image_size;
  if (predictor.sizes().in_channels != 1) {
    throw DataError(path + ": an IDX file holds grey images, and the model takes " +
                    std::to_string(predictor.sizes().in_channels) + " channels");
  }
  auto array = read_idx(path, 3);
  if (array.dims[1] != side || array.dims[2] != side) {
    throw DataError(path + ": IDX images are " + std::to_string(array.dims[1]) + "x" +
                    std::to_string(array.dims[2]) + ", the model takes " + std::to_string(side) +
                    "x" + std::to_string(side));
  }
  if (array.dims[0] == 0) throw DataError(path + ": the IDX file holds no images");
  std::vector<Input> out;
  const auto all = at::from_blob(array.data.data(), {array.dims[0], 1, side, side}, at::kByte);
  for (int64_t k = 0; k < array.dims[0]; ++k) {
    out.push_back({path + "[" + std::to_string(k) + "]", to_unit_float(all[k]).unsqueeze(0)});
  }
  return out;
}

std::string safe_name(const std::string& name) {
  std::string out;
  for (char c : std::filesystem::path(name).filename().string()) {
    out += (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_') ? c : '_';
  }
  return out;
}

} // namespace

Runner add_predict_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "predict",
      "Classify your own images: PNG, JPEG, BMP, GIF, PGM/PPM (any size; prepared "
      "as the model's data was: digits as MNIST was made, a folder data set's "
      "pictures resized and cropped) or IDX files of the model's image size");
  auto flags = std::make_shared<PredictFlags>();
  add_checkpoint_option(cmd, flags->checkpoint);
  cmd->add_option("images", flags->files, "image files (PNG, JPEG, PGM, BMP, GIF) or IDX files")
      ->required();
  cmd->add_option("--save-preprocessed", flags->save_dir,
                  "write each image the network saw to this directory as PNG");
  flags->compute.add_to(cmd);
  cmd->add_flag("--json", flags->json, "print one JSON array, one object per image");

  return [flags]() {
    const auto chosen = flags->compute.resolve(); // threads before any work
    auto predictor = Predictor::load(flags->checkpoint, "capsnet predict");
    predictor.to(chosen.first);
    predictor.model()->set_precision(chosen.second);
    if (!flags->save_dir.empty()) std::filesystem::create_directories(flags->save_dir);
    nlohmann::json results = nlohmann::json::array();
    int failures = 0;
    for (const auto& file : flags->files) {
      std::vector<Input> inputs;
      try {
        inputs = read_inputs(file, predictor);
      } catch (const std::exception& e) { // ImageError, DataError: report and go on
        ++failures;
        std::string message = e.what();
        if (message.rfind(file, 0) != 0) message = file + ": " + message;
        std::cerr << "capsnet: " << message << "\n";
        results.push_back({{"file", file}, {"error", message}});
        continue;
      }
      std::vector<at::Tensor> images;
      for (const auto& input : inputs) images.push_back(input.image);
      const auto out = predictor.classify(at::cat(images));
      for (size_t k = 0; k < inputs.size(); ++k) {
        const int64_t predicted = out.predictions[k].item<int64_t>();
        const auto lengths = out.lengths[k];
        std::vector<double> values(lengths.data_ptr<float>(),
                                   lengths.data_ptr<float>() + lengths.numel());
        nlohmann::json row = {{"file", inputs[k].name},
                              {"prediction", predicted},
                              {"class_name", predictor.class_name(predicted)},
                              {"lengths", values}};
        if (!flags->save_dir.empty()) {
          // N-NAME.png, N counting the images: two inputs of one name never collide.
          const auto path = (std::filesystem::path(flags->save_dir) /
                             (std::to_string(results.size()) + "-" + safe_name(inputs[k].name) +
                              ".png"))
                                .string();
          auto inputs_read = flags->files;
          inputs_read.push_back(flags->checkpoint);
          check_not_an_input(path, inputs_read);
          write_png(path, tensor_picture(inputs[k].image[0]));
          row["preprocessed"] = path;
        }
        if (!flags->json) {
          std::printf("%s: %s (length %.3f)\n  lengths:", inputs[k].name.c_str(),
                      predictor.class_name(predicted).c_str(), values[predicted]);
          for (size_t j = 0; j < values.size(); ++j) {
            std::printf(" %s:%.3f", predictor.class_name(int64_t(j)).c_str(), values[j]);
          }
          std::printf("\n");
        }
        results.push_back(row);
      }
    }
    if (flags->json) std::cout << results.dump() << std::endl;
    if (failures > 0) {
      std::cerr << "capsnet: " << failures << " of " << flags->files.size()
                << " files could not be read\n";
      return 1;
    }
    return 0;
  };
}

} // namespace capsnet::cli
