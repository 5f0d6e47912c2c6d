#include "commands.h"

#include "capsnet/inference/inference.h"

#include <nlohmann/json.hpp>

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

int run_predict(const PredictFlags& f) {
  const auto chosen = f.compute.resolve(); // threads before any work
  auto predictor = Predictor::load(f.checkpoint, "capsnet predict");
  predictor.to(chosen.first);
  predictor.model()->set_precision(chosen.second);
  auto inputs_read = f.files;
  inputs_read.push_back(f.checkpoint);
  nlohmann::json results = nlohmann::json::array();
  const int failures =
      predict_files(predictor, f.files, f.save_dir, inputs_read, [&](const nlohmann::json& row) {
        if (row.contains("error")) {
          std::cerr << "capsnet: " << prediction_text(row, predictor);
        } else if (!f.json) {
          std::cout << prediction_text(row, predictor);
        }
        results.push_back(row);
      });
  if (f.json) std::cout << results.dump() << std::endl;
  if (failures > 0) {
    std::cerr << "capsnet: " << failures << " of " << f.files.size()
              << " files could not be read\n";
    return 1;
  }
  return 0;
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
  return [flags]() { return run_predict(*flags); };
}

} // namespace capsnet::cli
