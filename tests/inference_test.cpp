#include "capsnet/engine/checkpoint.h"
#include "capsnet/inference/export.h"
#include "capsnet/inference/inference.h"
#include "capsnet/image/image.h"
#include "test_util.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>

namespace capsnet {
namespace {

TrainOptions tiny_options() {
  TrainOptions options;
  options.model = testing::tiny_config();
  return options;
}

TEST(Predictor, ClassifiesLikeTheModelInChunks) {
  at::manual_seed(11);
  CapsNet model(testing::tiny_config());
  auto options = tiny_options();
  options.normalize = true;
  Predictor predictor(model.ptr(), options);
  predictor.batch_size = 3; // 7 images: chunks of 3, 3, 1
  auto images = at::rand({7, 1, 12, 12});
  const auto got = predictor.classify(images);
  torch::NoGradGuard no_grad;
  const auto expected = model->forward((images - kMnistMean) / kMnistStd, {}, false);
  EXPECT_TRUE(at::allclose(got.capsules, expected.capsules, 1e-5, 1e-6));
  EXPECT_TRUE(at::allclose(got.lengths, expected.lengths, 1e-5, 1e-6));
  EXPECT_TRUE(at::equal(got.predictions, expected.predictions));
  const auto recon = predictor.reconstruct(got.capsules, got.predictions);
  EXPECT_EQ(recon.sizes(), (at::IntArrayRef{7, 1, 12, 12}));
  EXPECT_THROW(predictor.classify(at::rand({2, 1, 28, 28})), c10::Error);
}

TEST(Predictor, LoadsCheckpointsAndImageFiles) {
  const auto dir = testing::temp_dir("predictor");
  at::manual_seed(12);
  CapsNet model(testing::tiny_config());
  save_checkpoint(dir + "/m.pt", model, nullptr, tiny_options(), {});
  auto predictor = Predictor::load(dir + "/m.pt");
  GrayImage picture(40, 30, 1.0f); // black stroke on white
  for (int y = 5; y < 25; ++y) picture.at(20, y) = 0.0f;
  write_png(dir + "/digit.png", picture);
  const auto image = load_digit_image(dir + "/digit.png", predictor.sizes().image_size);
  EXPECT_EQ(image.sizes(), (at::IntArrayRef{1, 1, 12, 12}));
  EXPECT_FLOAT_EQ(image.max().item<float>(), 1.0f); // inverted: ink bright
  EXPECT_FLOAT_EQ(image[0][0][0][0].item<float>(), 0.0f);
  EXPECT_EQ(predictor.classify(image).lengths.sizes(), (at::IntArrayRef{1, 10}));
  EXPECT_THROW(load_digit_image(dir + "/m.pt"), ImageError);
}

TEST(GrayImageTensor, RoundTrip) {
  auto t = at::rand({5, 4});
  const auto image = to_gray_image(t);
  EXPECT_EQ(image.width, 4);
  EXPECT_EQ(image.height, 5);
  EXPECT_FLOAT_EQ(image.at(3, 2), t[2][3].item<float>());
  EXPECT_TRUE(at::equal(to_tensor(image), t));
}

TEST(Export, SeedNamesShapesAndAnExactReload) {
  const auto dir = testing::temp_dir("export");
  at::manual_seed(13);
  auto config = testing::tiny_config();
  config.digit_bias = true;
  CapsNet model(config);
  auto options = tiny_options();
  options.model = config;
  const auto config_path = export_pytorch(*model, options, dir + "/model.pth");
  EXPECT_EQ(config_path, dir + "/model.json");
  const auto back = read_pytorch_state_dict(dir + "/model.pth");
  const std::vector<std::string> names = {
      "conv1.weight",          "conv1.bias",          "conv2.weight",
      "conv2.bias",            "digit_capsules.weight", "digit_capsules.bias",
      "decoder.0.weight",      "decoder.0.bias",      "decoder.2.weight",
      "decoder.2.bias"}; // the tiny decoder has one hidden layer: Linear, ReLU, Linear, Sigmoid
  std::string got;
  for (const auto& item : back) got += item.first + " ";
  ASSERT_EQ(back.size(), names.size()) << got;
  const auto params = model->named_parameters();
  for (size_t k = 0; k < names.size(); ++k) {
    EXPECT_EQ(back[k].first, names[k]);
    const std::string own = names[k].rfind("conv2.", 0) == 0
                                ? "primary_capsules.conv." + names[k].substr(6)
                                : names[k];
    EXPECT_TRUE(at::equal(back[k].second, params[own])) << names[k];
  }
  EXPECT_EQ(back[4].second.sizes(), (at::IntArrayRef{32, 10, 4, 4}));
  std::ifstream in(config_path);
  const auto json = nlohmann::json::parse(in);
  EXPECT_EQ(json.at("model").get<CapsNetConfig>(), config);
  EXPECT_EQ(json.at("normalize").get<bool>(), false);
  EXPECT_THROW(export_pytorch(*model, options, dir + "/model.json"), std::invalid_argument);
}

} // namespace
} // namespace capsnet
