// capsnet serve's API without HTTP: request bodies, their refusals, and the
// batching inference thread against the Predictor it wraps.
#include "capsnet/serve/api.h"
#include "capsnet/viz/image.h"
#include "test_util.h"

#include <gtest/gtest.h>
#include <stb_image_write.h>

#include <fstream>
#include <thread>

namespace capsnet::serve {
namespace {

int status_of(const std::function<void()>& call) {
  try {
    call();
  } catch (const ApiError& e) {
    return e.status;
  }
  return 0;
}

TEST(ServeApi, PredictBodyAsJsonPixels) {
  std::vector<float> pixels(144);
  for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = float(i % 7) / 6.0f;
  const auto image = parse_predict_body(nlohmann::json(pixels).dump(), "application/json", 12);
  ASSERT_EQ(image.sizes(), (std::vector<int64_t>{1, 1, 12, 12}));
  EXPECT_TRUE(image.flatten().equal(at::tensor(pixels)));
  const auto wrapped = parse_predict_body(nlohmann::json{{"pixels", pixels}}.dump(),
                                          "Application/JSON; charset=utf-8", 12);
  EXPECT_TRUE(wrapped.equal(image));

  pixels[5] = 1.5f;
  EXPECT_EQ(status_of([&] { parse_predict_body(nlohmann::json(pixels).dump(), "application/json", 12); }), 400);
  pixels.pop_back();
  EXPECT_EQ(status_of([&] { parse_predict_body(nlohmann::json(pixels).dump(), "application/json", 12); }), 400);
  EXPECT_EQ(status_of([] { parse_predict_body("[0.5,", "application/json", 12); }), 400);
  EXPECT_EQ(status_of([] { parse_predict_body("[]", "text/plain", 12); }), 415);
  EXPECT_EQ(status_of([] { parse_predict_body("GIF89a", "image/png", 12); }), 400);
  EXPECT_EQ(status_of([] { parse_predict_body("", "image/jpeg", 12); }), 400);
}

TEST(ServeApi, PngUploadPreparedExactlyAsPredictPreparesAFile) {
  // A dark bar on a light background, as a user would draw it.
  GrayImage picture(60, 40, 0.95f);
  for (int y = 8; y < 32; ++y) {
    for (int x = 25; x < 33; ++x) picture.at(x, y) = 0.05f;
  }
  const auto bytes = encode_png(picture);
  const auto dir = testing::temp_dir("serve_png");
  std::ofstream(dir + "/bar.png", std::ios::binary) << bytes;
  const auto from_file = load_digit_image(dir + "/bar.png", 28);
  const auto from_body = parse_predict_body(bytes, "image/png", 28);
  EXPECT_TRUE(from_body.equal(from_file));
  EXPECT_GT(from_body.max().item<float>(), 0.9f); // inverted: ink bright
  // The same picture as a JPEG, from its file and as an upload.
  std::vector<unsigned char> gray(picture.pixels.size());
  for (size_t i = 0; i < gray.size(); ++i) gray[i] = static_cast<unsigned char>(picture.pixels[i] * 255);
  std::string jpeg;
  ASSERT_TRUE(stbi_write_jpg_to_func(
      [](void* out, void* data, int size) { static_cast<std::string*>(out)->append(static_cast<char*>(data), size); },
      &jpeg, picture.width, picture.height, 1, gray.data(), 90));
  std::ofstream(dir + "/bar.jpg", std::ios::binary) << jpeg;
  const auto jpeg_body = parse_predict_body(jpeg, "image/jpeg", 28);
  EXPECT_TRUE(jpeg_body.equal(load_digit_image(dir + "/bar.jpg", 28)));
  EXPECT_EQ(parse_predict_body(jpeg, "application/octet-stream", 28).sizes(), jpeg_body.sizes());
  // Cut short: the decoder's refusal, as a 400 naming the upload.
  try {
    parse_predict_body(bytes.substr(0, bytes.size() / 2), "image/png", 28);
    ADD_FAILURE() << "a truncated PNG was accepted";
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status, 400);
    EXPECT_NE(std::string(e.what()).find("uploaded image"), std::string::npos) << e.what();
  }
}

TEST(ServeApi, ReconstructBodyAndItsRefusals) {
  const auto ok = parse_reconstruct_body(R"({"capsule": 3, "vector": [0.1, -0.2, 0, 1.5], "format": "png"})",
                                         "application/json", 10, 4);
  EXPECT_EQ(ok.capsule, 3);
  EXPECT_EQ(ok.vector, (std::vector<float>{0.1f, -0.2f, 0.0f, 1.5f}));
  EXPECT_TRUE(ok.png);
  EXPECT_FALSE(parse_reconstruct_body(R"({"capsule": 0, "vector": [0,0,0,0]})", "application/json", 10, 4).png);
  auto status = [](const std::string& body, const std::string& type = "application/json") {
    return status_of([&] { parse_reconstruct_body(body, type, 10, 4); });
  };
  EXPECT_EQ(status(R"({"capsule": 10, "vector": [0,0,0,0]})"), 422);
  EXPECT_EQ(status(R"({"capsule": -1, "vector": [0,0,0,0]})"), 422);
  EXPECT_EQ(status(R"({"capsule": 2.5, "vector": [0,0,0,0]})"), 400);
  EXPECT_EQ(status(R"({"capsule": "2", "vector": [0,0,0,0]})"), 400);
  EXPECT_EQ(status(R"({"capsule": 2, "vector": [0,0,0]})"), 422);
  EXPECT_EQ(status(R"({"capsule": 2, "vector": [0,0,0,2.5]})"), 422);
  EXPECT_EQ(status(R"({"capsule": 2, "vector": [0,0,0,1e400]})"), 400); // not JSON's number
  EXPECT_EQ(status(R"({"capsule": 2, "vector": [0,0,0,"x"]})"), 400);
  EXPECT_EQ(status(R"({"capsule": 2})"), 400);
  EXPECT_EQ(status(R"([1, 2])"), 400);
  EXPECT_EQ(status(R"({"capsule": 2, "vector": [0,0,0,0], "format": "gif"})"), 400);
  EXPECT_EQ(status(R"({"capsule": 2, "vector": [0,0,0,0]})", "text/plain"), 415);
}

TEST(ServeApi, BatchedAnswersEqualOneByOne) {
  torch::manual_seed(4);
  CapsNet model(testing::tiny_config());
  TrainOptions options;
  options.model = model->config;
  Predictor predictor(model, options);
  const int64_t n = 24;
  const auto images = at::rand({n, 1, 12, 12});
  std::vector<Classification> alone;
  std::vector<at::Tensor> recon_alone;
  for (int64_t i = 0; i < n; ++i) {
    alone.push_back(predictor.classify(images.narrow(0, i, 1)));
    recon_alone.push_back(predictor.reconstruct(alone.back().capsules, at::full({1}, i % 10, at::kLong)));
  }
  std::vector<Classification> batched(n);
  std::vector<at::Tensor> recon_batched(n);
  {
    BatchingPredictor batcher(predictor, 8);
    std::vector<std::thread> clients;
    for (int64_t i = 0; i < n; ++i) {
      clients.emplace_back([&, i] {
        batched[i] = batcher.classify(images.narrow(0, i, 1));
        recon_batched[i] = batcher.reconstruct(batched[i].capsules, i % 10);
      });
    }
    for (auto& t : clients) t.join();
    const auto stats = batcher.stats();
    EXPECT_EQ(stats.images, 2 * n);
    EXPECT_LE(stats.largest, 8);
    EXPECT_GE(stats.batches, 2 * n / 8);
  }
  for (int64_t i = 0; i < n; ++i) {
    EXPECT_TRUE(batched[i].predictions.equal(alone[i].predictions)) << i;
    EXPECT_TRUE(at::allclose(batched[i].lengths, alone[i].lengths, 1e-5, 1e-6)) << i;
    EXPECT_TRUE(at::allclose(batched[i].capsules, alone[i].capsules, 1e-5, 1e-6)) << i;
    EXPECT_TRUE(at::allclose(recon_batched[i], recon_alone[i], 1e-5, 1e-6)) << i;
  }
}

TEST(ServeApi, RepliesCarryWhatThePageDraws) {
  Classification c;
  c.capsules = at::rand({1, 10, 16});
  c.lengths = c.capsules.norm(2, -1);
  c.predictions = c.lengths.argmax(1);
  const auto input = at::rand({1, 1, 28, 28});
  const auto reply = predict_reply(c, input);
  EXPECT_EQ(reply["class"].get<int64_t>(), c.predictions[0].item<int64_t>());
  EXPECT_EQ(reply["lengths"].size(), 10u);
  EXPECT_EQ(reply["capsules"].size(), 10u);
  EXPECT_EQ(reply["capsules"][0].size(), 16u);
  EXPECT_EQ(reply["input"].size(), 784u);
  EXPECT_FLOAT_EQ(reply["input"][30].get<float>(), input.flatten()[30].item<float>());
  EXPECT_EQ(reconstruct_reply(3, at::zeros({1, 1, 28, 28}))["pixels"].size(), 784u);
  EXPECT_EQ(error_reply(413, "too large")["status"], 413);
}

} // namespace
} // namespace capsnet::serve
