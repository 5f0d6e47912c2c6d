// capsnet serve's API without HTTP: request bodies, their refusals, the
// replies, and the batching inference thread against the Predictor it wraps;
// for a grey digit model and for a colour model with named classes.
#include "capsnet/serve/api.h"
#include "capsnet/serve/guard.h"
#include "capsnet/serve/metrics.h"
#include "capsnet/serve/server.h"
#include "capsnet/image/image.h"
#include "test_util.h"

#include <ATen/Parallel.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <nlohmann/json.hpp>
#include <stb_image_write.h>

#include <array>
#include <atomic>
#include <chrono>
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

// An untrained model of `config` with the MNIST data shape (a digit model).
Predictor digit_predictor(CapsNetConfig config) {
  torch::manual_seed(4);
  CapsNet model(config);
  TrainOptions options;
  options.model = config;
  return Predictor(model.ptr(), options);
}

// An untrained colour model of a folder data set: 3 named classes, pictures
// resized to 32 and centre-cropped to the network's 24.
Predictor colour_predictor() {
  auto config = testing::tiny_config();
  config.image_size = 24;
  config.in_channels = 3;
  config.num_classes = 3;
  torch::manual_seed(5);
  CapsNet model(config);
  TrainOptions options;
  options.model = config;
  DataShape shape;
  shape.image_size = 24;
  shape.channels = 3;
  shape.classes = 3;
  shape.class_names = {"cat", "dog", "fox"};
  shape.preparation = Preparation::kResize;
  shape.resize = 32;
  return Predictor(model.ptr(), options, shape);
}

// A width x height RGB picture whose pixel (x, y) is colour(x, y).
Picture rgb_picture(int width, int height,
                    const std::function<std::array<uint8_t, 3>(int, int)>& colour) {
  Picture picture{width, height, 3, {}};
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      for (const auto v : colour(x, y)) picture.pixels.push_back(v);
    }
  }
  return picture;
}

void append_bytes(void* out, void* data, int size) {
  static_cast<std::string*>(out)->append(static_cast<char*>(data), size);
}

TEST(ServeApi, PredictBodyAsJsonPixels) {
  const auto predictor = digit_predictor(testing::tiny_config()); // 1 x 12 x 12
  auto parse = [&](const std::string& body, const std::string& type) {
    return parse_predict_body(body, type, predictor);
  };
  std::vector<float> pixels(144);
  for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = float(i % 7) / 6.0f;
  const auto image = parse(nlohmann::json(pixels).dump(), "application/json");
  ASSERT_EQ(image.sizes(), (std::vector<int64_t>{1, 1, 12, 12}));
  EXPECT_TRUE(image.flatten().equal(at::tensor(pixels)));
  const auto wrapped =
      parse(nlohmann::json{{"pixels", pixels}}.dump(), "Application/JSON; charset=utf-8");
  EXPECT_TRUE(wrapped.equal(image));

  pixels[5] = 1.5f;
  EXPECT_EQ(status_of([&] { parse(nlohmann::json(pixels).dump(), "application/json"); }), 400);
  pixels.pop_back();
  EXPECT_EQ(status_of([&] { parse(nlohmann::json(pixels).dump(), "application/json"); }), 400);
  EXPECT_EQ(status_of([&] { parse("[0.5,", "application/json"); }), 400);
  EXPECT_EQ(status_of([&] { parse("[]", "text/plain"); }), 415);
  EXPECT_EQ(status_of([&] { parse("[]", "image/webp"); }), 415);
  EXPECT_EQ(status_of([&] { parse("GIF89a", "image/png"); }), 400);
  EXPECT_EQ(status_of([&] { parse("not a picture", "image/gif"); }), 400);
  EXPECT_EQ(status_of([&] { parse("", "image/jpeg"); }), 400);
  // Three channels' worth is the wrong count for a grey model.
  EXPECT_EQ(status_of([&] { parse(nlohmann::json(std::vector<float>(3 * 144, 0.5f)).dump(),
                                  "application/json"); }),
            400);
}

TEST(ServeApi, PngUploadPreparedExactlyAsPredictPreparesAFile) {
  // A dark bar on a light background, as a user would draw it.
  GrayImage picture(60, 40, 0.95f);
  for (int y = 8; y < 32; ++y) {
    for (int x = 25; x < 33; ++x) picture.at(x, y) = 0.05f;
  }
  auto config = testing::tiny_config();
  config.image_size = 28;
  const auto predictor = digit_predictor(config);
  const auto bytes = encode_png(picture);
  const auto dir = testing::temp_dir("serve_png");
  std::ofstream(dir + "/bar.png", std::ios::binary) << bytes;
  const auto from_file = load_digit_image(dir + "/bar.png", 28);
  const auto from_body = parse_predict_body(bytes, "image/png", predictor);
  EXPECT_TRUE(from_body.equal(from_file));
  EXPECT_GT(from_body.max().item<float>(), 0.9f); // inverted: ink bright
  // The same picture as a JPEG, from its file and as an upload.
  std::vector<unsigned char> gray(picture.pixels.size());
  for (size_t i = 0; i < gray.size(); ++i) gray[i] = static_cast<unsigned char>(picture.pixels[i] * 255);
  std::string jpeg;
  ASSERT_TRUE(stbi_write_jpg_to_func(append_bytes, &jpeg, picture.width, picture.height, 1,
                                     gray.data(), 90));
  std::ofstream(dir + "/bar.jpg", std::ios::binary) << jpeg;
  const auto jpeg_body = parse_predict_body(jpeg, "image/jpeg", predictor);
  EXPECT_TRUE(jpeg_body.equal(load_digit_image(dir + "/bar.jpg", 28)));
  EXPECT_TRUE(parse_predict_body(jpeg, "application/octet-stream", predictor).equal(jpeg_body));
  // The same picture as a BMP, labelled as such: as its file.
  std::string bmp;
  ASSERT_TRUE(stbi_write_bmp_to_func(append_bytes, &bmp, picture.width, picture.height, 1,
                                     gray.data()));
  std::ofstream(dir + "/bar.bmp", std::ios::binary) << bmp;
  EXPECT_TRUE(parse_predict_body(bmp, "image/bmp", predictor)
                  .equal(load_digit_image(dir + "/bar.bmp", 28)));
  // Cut short: the decoder's refusal, as a 400 naming the upload.
  try {
    parse_predict_body(bytes.substr(0, bytes.size() / 2), "image/png", predictor);
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
  Predictor predictor(model.ptr(), options);
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

TEST(ServeApi, ABatchRunsOnOneThreadPerEightImages) {
  EXPECT_EQ(threads_for_batch(1, 2), 1);
  EXPECT_EQ(threads_for_batch(15, 2), 1);
  EXPECT_EQ(threads_for_batch(16, 2), 2);
  EXPECT_EQ(threads_for_batch(64, 2), 2);
  EXPECT_EQ(threads_for_batch(64, 16), 8);
  EXPECT_EQ(threads_for_batch(64, 1), 1);
  EXPECT_EQ(threads_for_batch(0, 0), 1);
  // The inference thread applies it: one image runs on one thread of two.
#if !AT_PARALLEL_OPENMP
  GTEST_SKIP() << "threads per batch are set in OpenMP builds only";
#endif
  const int before = at::get_num_threads();
  at::set_num_threads(2);
  torch::manual_seed(4);
  CapsNet model(testing::tiny_config());
  TrainOptions options;
  options.model = model->config;
  Predictor predictor(model.ptr(), options);
  {
    BatchingPredictor batcher(predictor, 8);
    batcher.classify(at::rand({1, 1, 12, 12}));
    EXPECT_EQ(batcher.stats().threads, 1);
  }
  at::set_num_threads(before);
}

TEST(ServeApi, RepliesCarryWhatThePageDraws) {
  Classification c;
  c.capsules = at::rand({1, 10, 16});
  c.lengths = c.capsules.norm(2, -1);
  c.predictions = c.lengths.argmax(1);
  c.predictions = at::full({1}, 7, at::kLong);
  const auto input = at::rand({1, 1, 28, 28});
  const auto reply = predict_reply(c, input, DataShape{}); // MNIST's: no class names
  EXPECT_EQ(reply["class"].get<int64_t>(), 7);
  EXPECT_EQ(reply["class_name"], "7");
  EXPECT_EQ(reply["lengths"].size(), 10u);
  EXPECT_FLOAT_EQ(reply["lengths"][4].get<float>(), c.lengths[0][4].item<float>());
  EXPECT_EQ(reply["capsules"].size(), 10u);
  EXPECT_EQ(reply["capsules"][0].size(), 16u);
  EXPECT_EQ(reply["input"].size(), 784u);
  EXPECT_EQ(reply["channels"], 1);
  EXPECT_EQ(reply["side"], 28);
  EXPECT_FLOAT_EQ(reply["input"][30].get<float>(), input.flatten()[30].item<float>());
  const auto recon = reconstruct_reply(3, at::zeros({1, 1, 28, 28}));
  EXPECT_EQ(recon["pixels"].size(), 784u);
  EXPECT_EQ(recon["channels"], 1);
  EXPECT_EQ(error_reply(413, "too large")["status"], 413);

  // A colour model's: the named class, and every channel of the input.
  DataShape named;
  named.class_names = {"cat", "dog", "fox"};
  Classification three;
  three.capsules = at::rand({1, 3, 4});
  three.lengths = three.capsules.norm(2, -1);
  three.predictions = at::full({1}, 2, at::kLong);
  const auto colour = at::rand({1, 3, 24, 24});
  const auto named_reply = predict_reply(three, colour, named);
  EXPECT_EQ(named_reply["class"], 2);
  EXPECT_EQ(named_reply["class_name"], "fox");
  EXPECT_EQ(named_reply["channels"], 3);
  EXPECT_EQ(named_reply["side"], 24);
  ASSERT_EQ(named_reply["input"].size(), 3u * 24 * 24);
  // Channel after channel: element 1 * 576 + 5 * 24 + 7 is channel 1's (row 5, column 7).
  EXPECT_FLOAT_EQ(named_reply["input"][576 + 5 * 24 + 7].get<float>(),
                  colour[0][1][5][7].item<float>());
}

TEST(ServeApi, ModelInfoNamesEveryClass) {
  const auto digits = model_info(digit_predictor(testing::tiny_config()));
  EXPECT_EQ(digits["class_names"],
            nlohmann::json({"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}));
  EXPECT_EQ(digits["channels"], 1);
  EXPECT_EQ(digits["image_size"], 12);
  EXPECT_EQ(digits["side"], 12);
  EXPECT_EQ(digits["classes"], 10);
  EXPECT_EQ(digits["capsule_dim"], 4);
  EXPECT_EQ(digits["preparation"], "digit");
  const auto colour = model_info(colour_predictor());
  EXPECT_EQ(colour["class_names"], nlohmann::json({"cat", "dog", "fox"}));
  EXPECT_EQ(colour["channels"], 3);
  EXPECT_EQ(colour["image_size"], 24);
  EXPECT_EQ(colour["classes"], 3);
  EXPECT_EQ(colour["preparation"], "resize");
}

TEST(ServeApi, ColourModelTakesPicturesResizedAndCentreCropped) {
  const auto predictor = colour_predictor();
  auto parse = [&](const std::string& body, const std::string& type) {
    return parse_predict_body(body, type, predictor);
  };
  // 32 x 32, the stored size: only the centre 24 x 24 crop, from (4, 4).
  const auto gradient = rgb_picture(32, 32, [](int x, int y) {
    return std::array<uint8_t, 3>{uint8_t(7 * x), uint8_t(5 * y), 90};
  });
  const auto png = encode_png(gradient);
  const auto image = parse(png, "image/png");
  ASSERT_EQ(image.sizes(), (std::vector<int64_t>{1, 3, 24, 24}));
  auto expected = at::empty({1, 3, 24, 24});
  for (int64_t i = 0; i < 24; ++i) {
    for (int64_t j = 0; j < 24; ++j) {
      expected[0][0][i][j] = 7.0 * (j + 4) / 255;
      expected[0][1][i][j] = 5.0 * (i + 4) / 255;
      expected[0][2][i][j] = 90.0 / 255;
    }
  }
  EXPECT_TRUE(at::allclose(image, expected, 0, 1e-6)) << (image - expected).abs().max();
  EXPECT_TRUE(image.equal(predictor.prepare_picture(png, "gradient")));
  // The same pixels as a BMP, a PPM, and a PNG labelled as bytes.
  std::string bmp;
  ASSERT_TRUE(stbi_write_bmp_to_func(append_bytes, &bmp, 32, 32, 3, gradient.pixels.data()));
  EXPECT_TRUE(parse(bmp, "image/bmp").equal(image));
  const auto ppm =
      "P6\n32 32\n255\n" + std::string(gradient.pixels.begin(), gradient.pixels.end());
  EXPECT_TRUE(parse(ppm, "image/x-portable-pixmap").equal(image));
  EXPECT_TRUE(parse(png, "application/octet-stream").equal(image));

  // 96 x 48, red | green | blue in thirds of 24, 48, 24 columns: shorter side
  // to 32 (64 x 32), then the centre 24 x 24 is all the green middle.
  const auto bands = rgb_picture(96, 48, [](int x, int) {
    return x < 24 ? std::array<uint8_t, 3>{255, 0, 0}
                  : x < 72 ? std::array<uint8_t, 3>{0, 255, 0} : std::array<uint8_t, 3>{0, 0, 255};
  });
  const auto green = parse(encode_png(bands), "image/png");
  EXPECT_EQ(green[0][1].min().item<float>(), 1.0f);
  EXPECT_EQ(green[0][0].max().item<float>(), 0.0f);
  EXPECT_EQ(green[0][2].max().item<float>(), 0.0f);

  // A one-pixel GIF of palette colour (200, 40, 10): enlarged, every pixel that colour.
  static const char kGif[] = "GIF89a\x01\x00\x01\x00\x80\x00\x00\xc8\x28\x0a\x00\x00\x00"
                             ",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02\x44\x01\x00;";
  const std::string gif(kGif, sizeof kGif - 1);
  const auto dot = parse(gif, "image/gif");
  ASSERT_EQ(dot.sizes(), (std::vector<int64_t>{1, 3, 24, 24}));
  EXPECT_NEAR(dot[0][0].min().item<float>(), 200.0 / 255, 1e-6);
  EXPECT_NEAR(dot[0][1].max().item<float>(), 40.0 / 255, 1e-6);
  EXPECT_NEAR(dot[0][2].max().item<float>(), 10.0 / 255, 1e-6);

  // A grey picture for a colour model: the grey in every channel.
  GrayImage ramp(32, 32);
  for (int y = 0; y < 32; ++y) {
    for (int x = 0; x < 32; ++x) ramp.at(x, y) = float(x + y) / 62;
  }
  const auto grey = parse(encode_png(ramp), "image/png");
  EXPECT_TRUE(grey[0][0].equal(grey[0][1]));
  EXPECT_TRUE(grey[0][0].equal(grey[0][2]));
  EXPECT_GT((grey[0][0].max() - grey[0][0].min()).item<float>(), 0.5f);

  EXPECT_EQ(status_of([&] { parse(png.substr(0, png.size() / 2), "image/png"); }), 400);
  EXPECT_EQ(status_of([&] { parse("", "image/gif"); }), 400);
  EXPECT_EQ(status_of([&] { parse(png, "text/plain"); }), 415);
}

TEST(ServeApi, ColourModelTakesJsonPixelsChannelAfterChannel) {
  const auto predictor = colour_predictor();
  std::vector<float> pixels(3 * 24 * 24);
  for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = float(i % 11) / 10.0f;
  const auto image =
      parse_predict_body(nlohmann::json(pixels).dump(), "application/json", predictor);
  ASSERT_EQ(image.sizes(), (std::vector<int64_t>{1, 3, 24, 24}));
  EXPECT_TRUE(image.flatten().equal(at::tensor(pixels)));
  EXPECT_FLOAT_EQ(image[0][2][3][4].item<float>(), pixels[2 * 576 + 3 * 24 + 4]);
  const auto wrapped =
      parse_predict_body(nlohmann::json{{"pixels", pixels}}.dump(), "application/json", predictor);
  EXPECT_TRUE(wrapped.equal(image));
  // One channel's worth is refused, naming the count wanted.
  try {
    parse_predict_body(nlohmann::json(std::vector<float>(576, 0.5f)).dump(), "application/json",
                       predictor);
    ADD_FAILURE() << "576 values were taken for a 3-channel model";
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status, 400);
    EXPECT_NE(std::string(e.what()).find("1728 numbers (3 channels of 24x24"), std::string::npos)
        << e.what();
  }
  pixels[1000] = -0.1f;
  EXPECT_EQ(status_of([&] {
              parse_predict_body(nlohmann::json(pixels).dump(), "application/json", predictor);
            }),
            400);
}

TEST(ServeApi, ColourModelAnswersAndReconstructsInColour) {
  auto predictor = colour_predictor();
  const auto picture = rgb_picture(40, 30, [](int x, int y) {
    return std::array<uint8_t, 3>{uint8_t(6 * x), uint8_t(255 - 8 * y), uint8_t(3 * (x + y))};
  });
  const auto input = parse_predict_body(encode_png(picture), "image/png", predictor);
  BatchingPredictor batcher(predictor, 4);
  const auto result = batcher.classify(input);
  const auto reply = predict_reply(result, input, batcher.predictor().shape());
  const auto k = reply["class"].get<int64_t>();
  ASSERT_TRUE(k >= 0 && k < 3) << k;
  EXPECT_EQ(reply["class_name"], std::vector<std::string>({"cat", "dog", "fox"})[size_t(k)]);
  EXPECT_EQ(reply["lengths"].size(), 3u);
  EXPECT_EQ(reply["input"].size(), 3u * 24 * 24);
  // The JSON form of what the network saw gives the same answer.
  const auto again = parse_predict_body(reply["input"].dump(), "application/json", predictor);
  EXPECT_TRUE(again.equal(input));

  const auto image = batcher.reconstruct(result.capsules, k);
  ASSERT_EQ(image.sizes(), (std::vector<int64_t>{1, 3, 24, 24}));
  const auto recon = reconstruct_reply(k, image);
  EXPECT_EQ(recon["channels"], 3);
  EXPECT_EQ(recon["side"], 24);
  ASSERT_EQ(recon["pixels"].size(), 3u * 24 * 24);
  EXPECT_FLOAT_EQ(recon["pixels"][2 * 576 + 100].get<float>(), image[0][2][4][4].item<float>());
  // As a PNG: RGB, each pixel the reconstruction's, rounded to 8 bits.
  const auto png = reconstruct_png(image);
  const auto info = picture_info(png, "reconstruction");
  EXPECT_TRUE(info.colour);
  EXPECT_EQ(info.width, 24);
  const auto decoded = picture_tensor(decode_picture(png, "reconstruction", 3));
  EXPECT_TRUE(decoded.equal(image[0].mul(255).round().to(at::kByte)));
  EXPECT_FALSE(picture_info(reconstruct_png(at::full({1, 1, 12, 12}, 0.5)), "grey").colour);
}

TEST(ServeGuard, TokensCompareByContentAndLength) {
  EXPECT_TRUE(tokens_equal("0123456789abcdef", "0123456789abcdef"));
  EXPECT_FALSE(tokens_equal("0123456789abcdef", "0123456789abcdeF"));
  EXPECT_FALSE(tokens_equal("0123456789abcdef", "0123456789abcde"));
  EXPECT_FALSE(tokens_equal("", "x"));
  EXPECT_TRUE(tokens_equal("", ""));
  // A prefix padded with NULs is still shorter: the lengths count.
  EXPECT_FALSE(tokens_equal(std::string("ab\0", 3), "ab"));
}

TEST(ServeGuard, BearerTokensAreReadStrictly) {
  EXPECT_EQ(bearer_token("Bearer abc123"), "abc123");
  EXPECT_EQ(bearer_token("bearer   abc123  "), "abc123");
  EXPECT_EQ(bearer_token("Basic abc123"), std::nullopt);
  EXPECT_EQ(bearer_token("Bearer"), std::nullopt);
  EXPECT_EQ(bearer_token("Bearer "), std::nullopt);
  EXPECT_EQ(bearer_token("Bearer a b"), std::nullopt);
  EXPECT_EQ(bearer_token("abc123"), std::nullopt);
}

TEST(ServeGuard, LoopbackHosts) {
  for (const char* host : {"127.0.0.1", "127.1.2.3", "::1", "localhost", "::ffff:127.0.0.1"}) {
    EXPECT_TRUE(is_loopback_host(host)) << host;
  }
  for (const char* host : {"0.0.0.0", "::", "192.168.1.2", "10.0.0.1", "example.org", "128.0.0.1"}) {
    EXPECT_FALSE(is_loopback_host(host)) << host;
  }
}

TEST(ServeGuard, ConnectionsAreLimitedPerClientAndInAll) {
  ConnectionLimiter limiter(3, 2);
  using V = ConnectionLimiter::Verdict;
  EXPECT_EQ(limiter.admit("a"), V::kAdmitted);
  EXPECT_EQ(limiter.admit("a"), V::kAdmitted);
  EXPECT_EQ(limiter.admit("a"), V::kClientFull);
  EXPECT_EQ(limiter.admit("b"), V::kAdmitted);
  EXPECT_EQ(limiter.admit("c"), V::kServerFull);
  EXPECT_EQ(limiter.open(), 3);
  limiter.release("a");
  EXPECT_EQ(limiter.admit("c"), V::kAdmitted);
  limiter.release("unknown"); // not counted: no effect
  EXPECT_EQ(limiter.open(), 3);
}

TEST(ServeMetrics, PrometheusTextHasCountsAndCumulativeBuckets) {
  ServeMetrics metrics;
  metrics.request("/api/predict", 200, 0.003);
  metrics.request("/api/predict", 200, 0.2);
  metrics.request("/api/predict", 400, 0.0005);
  metrics.request("other", 400, -1); // unparsed: counted, no latency
  metrics.batch(3, 0.01);
  metrics.refused("unauthorized", 2);
  const auto text = metrics.render({5, 7, 1000});
  EXPECT_NE(text.find("capsnet_serve_requests_total{path=\"/api/predict\",status=\"200\"} 2\n"),
            std::string::npos);
  EXPECT_NE(text.find("capsnet_serve_requests_total{path=\"other\",status=\"400\"} 1\n"),
            std::string::npos);
  EXPECT_NE(text.find("capsnet_serve_request_duration_seconds_bucket{path=\"/api/predict\","
                      "le=\"0.001\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("capsnet_serve_request_duration_seconds_bucket{path=\"/api/predict\","
                      "le=\"0.005\"} 2\n"), std::string::npos);
  EXPECT_NE(text.find("capsnet_serve_request_duration_seconds_bucket{path=\"/api/predict\","
                      "le=\"+Inf\"} 3\n"), std::string::npos);
  EXPECT_EQ(text.find("capsnet_serve_request_duration_seconds_count{path=\"other\"}"),
            std::string::npos);
  EXPECT_NE(text.find("capsnet_serve_batch_size_bucket{le=\"2\"} 0\n"), std::string::npos);
  EXPECT_NE(text.find("capsnet_serve_batch_size_bucket{le=\"4\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("capsnet_serve_batch_size_sum 3\n"), std::string::npos);
  EXPECT_NE(text.find("capsnet_serve_refused_total{reason=\"unauthorized\"} 2\n"), std::string::npos);
  EXPECT_NE(text.find("capsnet_serve_queue_depth 5\n"), std::string::npos);
  EXPECT_NE(text.find("capsnet_serve_connections 7\n"), std::string::npos);
  EXPECT_NE(text.find("process_resident_memory_bytes 1000\n"), std::string::npos);
  EXPECT_EQ(metrics.requests("/api/predict", 200), 2);
  EXPECT_EQ(metrics_path("/api/predict"), "/api/predict");
  EXPECT_EQ(metrics_path("/wp-login.php"), "other");
  EXPECT_GT(resident_bytes(), 1 << 20);
}

TEST(ServeApi, AFullQueueRefusesAtOnceAndAnswersTheRest) {
  auto predictor = digit_predictor(testing::tiny_config());
  ServeMetrics metrics;
  BatchingPredictor batcher(predictor, /*max_batch=*/1, /*max_queue=*/2, &metrics);
  const auto side = predictor.sizes().image_size;
  const auto image = at::rand({1, 1, side, side});
  const auto expected = predictor.classify(image).lengths;
  std::atomic<int> refused{0}, answered{0}, wrong{0};
  std::vector<std::thread> clients;
  for (int k = 0; k < 32; ++k) {
    clients.emplace_back([&] {
      try {
        int64_t batch = 0;
        const auto out = batcher.classify(image, &batch);
        answered += 1;
        if (batch != 1 || !at::allclose(out.lengths, expected, 1e-5, 1e-6)) wrong += 1;
      } catch (const ApiError& e) {
        if (e.status == 503) refused += 1;
      }
    });
  }
  for (auto& t : clients) t.join();
  EXPECT_EQ(refused + answered, 32);
  EXPECT_GE(answered, 1);
  EXPECT_EQ(wrong, 0);
  EXPECT_EQ(batcher.queue_depth(), 0);
  EXPECT_NE(metrics.render({}).find("capsnet_serve_batch_size_count " +
                                    std::to_string(answered.load()) + "\n"),
            std::string::npos);
}

TEST(ServeGuard, TheDecodeBudgetBoundsThePixelsInFlight) {
  DecodeBudget budget(1000);
  auto refusal = DecodeBudget::Refusal::kNone;
  {
    auto first = budget.reserve(600, refusal);
    EXPECT_EQ(refusal, DecodeBudget::Refusal::kNone);
    EXPECT_EQ(budget.in_flight(), 600);
    auto second = budget.reserve(600, refusal); // 1200 > 1000: come back later
    EXPECT_EQ(refusal, DecodeBudget::Refusal::kBusy);
    EXPECT_EQ(budget.in_flight(), 600);
    auto moved = std::move(first); // a moved lease is released once
    auto third = budget.reserve(400, refusal);
    EXPECT_EQ(refusal, DecodeBudget::Refusal::kNone);
    EXPECT_EQ(budget.in_flight(), 1000);
  }
  EXPECT_EQ(budget.in_flight(), 0);
  budget.reserve(1001, refusal); // never fits, however idle the server
  EXPECT_EQ(refusal, DecodeBudget::Refusal::kTooLarge);
  EXPECT_THROW(DecodeBudget(0), std::invalid_argument);
}

TEST(ServeApi, UploadsBeyondTheDecodeBudgetAreRefused) {
  const auto predictor = digit_predictor(testing::tiny_config());
  // A dark stroke on white, 40 x 30 = 1,200 pixels.
  const auto png = encode_png(rgb_picture(40, 30, [](int x, int y) {
    const uint8_t v = (x >= 15 && x < 25 && y >= 5 && y < 25) ? 0 : 255;
    return std::array<uint8_t, 3>{v, v, v};
  }));
  DecodeBudget budget(2000);
  // 1,200 pixels fit alone; with 1,000 in flight elsewhere they must wait.
  EXPECT_EQ(status_of([&] { parse_predict_body(png, "image/png", predictor, &budget); }), 0);
  auto refusal = DecodeBudget::Refusal::kNone;
  auto elsewhere = budget.reserve(1000, refusal);
  try {
    parse_predict_body(png, "image/png", predictor, &budget);
    FAIL() << "a decode beyond the budget ran";
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status, 503);
    EXPECT_EQ(e.refusal, "decode_budget");
  }
  EXPECT_EQ(budget.in_flight(), 1000); // the refused upload holds nothing
  DecodeBudget small(1000);
  EXPECT_EQ(status_of([&] { parse_predict_body(png, "image/png", predictor, &small); }), 413);
}

TEST(ServeServer, AccessChecksRefuseUnsafeSharing) {
  ServerOptions options;
  EXPECT_NO_THROW(check_access(options, false)); // loopback, no token
  options.host = "0.0.0.0";
  EXPECT_THROW(check_access(options, false), std::invalid_argument);
  EXPECT_NO_THROW(check_access(options, true));
  options.token = "short";
  EXPECT_THROW(check_access(options, false), std::invalid_argument);
  options.token = "0123456789abcdef0123";
  EXPECT_NO_THROW(check_access(options, false));
  options.tls_cert = "cert.pem";
  EXPECT_THROW(check_access(options, false), std::invalid_argument);
}

// The whole server in this process, on a free port: the gate, the routes,
// the metrics and stop().
TEST(ServeServer, AnswersOverHttpInProcess) {
  ServerOptions options;
  options.port = 0;
  options.token = "0123456789abcdef0123";
  options.decode_megapixels = 1;
  options.checkpoint = "in-memory";
  Server server(digit_predictor(testing::tiny_config()), options);
  ASSERT_GT(server.port(), 0);
  // Stops and joins the server however the test ends (an ASSERT returns early).
  struct Serving {
    Server& server;
    bool ran = false;
    std::thread thread{[this] { ran = server.run(); }};
    ~Serving() {
      server.stop();
      if (thread.joinable()) thread.join();
    }
  } serving{server};
  httplib::Client client("127.0.0.1", server.port());
  client.set_connection_timeout(10);
  client.set_read_timeout(30);
  // Bound and listening since the constructor: the kernel queues the
  // connection until run() accepts it.
  auto health = client.Get("/healthz");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  EXPECT_EQ(nlohmann::json::parse(health->body)["checkpoint"], "in-memory");

  const auto side = testing::tiny_config().image_size;
  const auto pixels = nlohmann::json(std::vector<double>(side * side, 0.5)).dump();
  auto refused = client.Post("/api/predict", pixels, "application/json");
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 401);
  const httplib::Headers auth = {{"Authorization", "Bearer " + options.token}};
  auto answer = client.Post("/api/predict", auth, pixels, "application/json");
  ASSERT_TRUE(answer);
  EXPECT_EQ(answer->status, 200) << answer->body;
  const auto reply = nlohmann::json::parse(answer->body);
  EXPECT_EQ(reply["lengths"].size(), size_t(testing::tiny_config().num_classes));
  // 1,200 x 1,000 pixels: over the 1-megapixel decode budget.
  const auto large = encode_png(rgb_picture(1200, 1000, [](int, int) {
    return std::array<uint8_t, 3>{255, 255, 255};
  }));
  auto too_large = client.Post("/api/predict", auth, large, "image/png");
  ASSERT_TRUE(too_large);
  EXPECT_EQ(too_large->status, 413) << too_large->body;
  auto missing = client.Get("/nowhere");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);
  EXPECT_NE(missing->body.find("the API is POST /api/predict"), std::string::npos);
  auto metrics = client.Get("/metrics", auth);
  ASSERT_TRUE(metrics);
  EXPECT_NE(metrics->body.find("capsnet_serve_refused_total{reason=\"unauthorized\"} 1"),
            std::string::npos)
      << metrics->body;

  server.stop();
  serving.thread.join();
  EXPECT_TRUE(serving.ran);
  EXPECT_EQ(server.answered(), 1);
}

} // namespace
} // namespace capsnet::serve
