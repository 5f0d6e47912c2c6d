// Folder data sets (data/folder.h): listing, splitting, decoding, caching and
// streaming, bad data, and the preparation of pictures (image/image.h).
#include "capsnet/data/folder.h"
#include "capsnet/data/batch.h"
#include "capsnet/data/registry.h"
#include "capsnet/inference/inference.h"
#include "capsnet/registry/models.h"
#include "capsnet/image/image.h"
#include "test_util.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>

namespace capsnet {
namespace {

namespace fs = std::filesystem;

// A w x h picture whose pixel (x, y) channel c is (x * 7 + y * 13 + c * 50 + seed) % 256.
Picture pattern(int w, int h, int channels, int seed) {
  Picture p{w, h, channels, std::vector<uint8_t>(size_t(w) * h * channels)};
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      for (int c = 0; c < channels; ++c) {
        p.pixels[(size_t(y) * w + x) * channels + c] =
            uint8_t((x * 7 + y * 13 + c * 50 + seed) % 256);
      }
    }
  }
  return p;
}

void write_bytes(const fs::path& path, const std::string& bytes) {
  fs::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary) << bytes;
}

// DIR/CLASS/k.png for each class, `per_class` pictures of side x side.
std::string make_tree(const std::string& tag, const std::vector<std::string>& classes,
                      int per_class, int side = 12, int channels = 1) {
  const auto dir = testing::temp_dir(tag);
  for (size_t c = 0; c < classes.size(); ++c) {
    for (int k = 0; k < per_class; ++k) {
      write_bytes(fs::path(dir) / classes[c] / (std::to_string(k) + ".png"),
                  encode_png(pattern(side, side, channels, int(c * 31 + k))));
    }
  }
  return dir;
}

template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(FolderListing, ClassesSortedAndSplitStratifiedFromTheSeed) {
  const auto dir = make_tree("folder_split", {"zebra", "ant", "cat"}, 20);
  // 7 more ants: classes of different sizes, each held out in proportion.
  for (int k = 20; k < 27; ++k) {
    write_bytes(fs::path(dir) / "ant" / (std::to_string(k) + ".png"),
                encode_png(pattern(12, 12, 1, k)));
  }
  const auto listing = list_image_folder(dir, 0.2, 5);
  EXPECT_EQ(listing.classes, (std::vector<std::string>{"ant", "cat", "zebra"}));
  EXPECT_FALSE(listing.split_folders);
  std::map<int64_t, int> test_count, train_count;
  for (const auto& f : listing.test) ++test_count[f.label];
  for (const auto& f : listing.train) ++train_count[f.label];
  EXPECT_EQ(test_count[0], 5);  // round(0.2 * 27)
  EXPECT_EQ(train_count[0], 22);
  EXPECT_EQ(test_count[1], 4);
  EXPECT_EQ(test_count[2], 4);
  // Labels follow the folder: "ant/..." is class 0.
  for (const auto& f : listing.train) {
    EXPECT_EQ(f.path.substr(0, f.path.find('/')), listing.classes[f.label]) << f.path;
  }
  // The same seed draws the same split, another seed another one.
  const auto again = list_image_folder(dir, 0.2, 5);
  const auto other = list_image_folder(dir, 0.2, 6);
  auto paths = [](const std::vector<ImageFile>& files) {
    std::vector<std::string> out;
    for (const auto& f : files) out.push_back(f.path);
    return out;
  };
  EXPECT_EQ(paths(again.test), paths(listing.test));
  EXPECT_NE(paths(other.test), paths(listing.test));
  // A recorded split is kept whatever the seed and fraction.
  const auto recorded = list_image_folder(dir, 0.5, 99, paths(listing.test));
  EXPECT_EQ(paths(recorded.test), paths(listing.test));
  EXPECT_EQ(recorded.train_identity, listing.train_identity);
}

TEST(FolderListing, TrainAndTestFolders) {
  const auto dir = testing::temp_dir("folder_tt");
  for (const std::string split : {"train", "test"}) {
    for (const std::string klass : {"a", "b"}) {
      for (int k = 0; k < 3; ++k) {
        write_bytes(fs::path(dir) / split / klass / (std::to_string(k) + ".png"),
                    encode_png(pattern(10, 10, 1, k)));
      }
    }
  }
  const auto listing = list_image_folder(dir, 0.1, 1);
  EXPECT_TRUE(listing.split_folders);
  EXPECT_EQ(listing.train.size(), 6u);
  EXPECT_EQ(listing.test.size(), 6u);
  EXPECT_EQ(listing.test.front().path, "test/a/0.png");
}

TEST(FolderListing, BadLayoutsAreNamed) {
  EXPECT_NE(error_of([] {
              list_image_folder("/nonexistent/pictures", 0.1, 1);
            }).find("/nonexistent/pictures: no such folder"),
            std::string::npos);
  const auto one = make_tree("folder_one", {"only"}, 4);
  EXPECT_NE(error_of([&] { list_image_folder(one, 0.1, 1); }).find("only one class folder (only)"),
            std::string::npos);
  const auto empty = make_tree("folder_empty", {"a", "b"}, 4);
  fs::create_directories(fs::path(empty) / "c");
  write_bytes(fs::path(empty) / "c" / "notes.txt", "not a picture");
  const auto message = error_of([&] { list_image_folder(empty, 0.1, 1); });
  EXPECT_NE(message.find("/c: the class folder holds no pictures"), std::string::npos) << message;

  const auto tt = testing::temp_dir("folder_tt_bad");
  for (const std::string klass : {"a", "b"}) {
    write_bytes(fs::path(tt) / "train" / klass / "0.png", encode_png(pattern(10, 10, 1, 0)));
    write_bytes(fs::path(tt) / "test" / klass / "0.png", encode_png(pattern(10, 10, 1, 0)));
  }
  write_bytes(fs::path(tt) / "test" / "stray" / "0.png", encode_png(pattern(10, 10, 1, 0)));
  EXPECT_NE(error_of([&] { list_image_folder(tt, 0.1, 1); }).find("class 'stray' is not in train/"),
            std::string::npos);
  fs::remove_all(fs::path(tt) / "test" / "stray");
  fs::remove_all(fs::path(tt) / "test" / "b");
  EXPECT_NE(error_of([&] { list_image_folder(tt, 0.1, 1); }).find("/test/b: missing"),
            std::string::npos);
  fs::remove_all(fs::path(tt) / "test");
  EXPECT_NE(error_of([&] { list_image_folder(tt, 0.1, 1); }).find("/test: missing"),
            std::string::npos);
  const auto flat = make_tree("folder_flat", {"a", "b"}, 3);
  EXPECT_NE(error_of([&] {
              list_image_folder(flat, 0.1, 1, {"a/0.png", "gone/9.png"});
            }).find("test files the checkpoint recorded are gone (gone/9.png)"),
            std::string::npos);
}

TEST(FolderListing, OddFilesAreSkippedAndListed) {
  const auto dir = make_tree("folder_odd", {"a", "b"}, 3);
  const fs::path a = fs::path(dir) / "a";
  write_bytes(a / "readme.txt", "text");
  write_bytes(a / "empty.png", "");
  write_bytes(a / ".DS_Store", "mac");       // hidden: passed over silently
  fs::create_directories(a / "folder.png");  // a directory named like a picture: listed into
  write_bytes(a / "folder.png" / "inner.png", encode_png(pattern(12, 12, 1, 9)));
  write_bytes(a / "naïve name with spaces.png", encode_png(pattern(12, 12, 1, 8)));
  fs::create_directory_symlink(a, a / "loop");              // a link back into the tree
  fs::create_symlink(a / "missing.png", a / "broken.png");  // a broken link
  write_bytes(a / "corrupt.png", std::string("\x89PNG\r\n\x1a\n", 8) + "garbage");
  const auto listing = list_image_folder(dir, 0.3, 1);
  std::string skipped;
  for (const auto& s : listing.skipped) skipped += s + "\n";
  EXPECT_NE(skipped.find("a/readme.txt: not a picture by its name"), std::string::npos) << skipped;
  EXPECT_NE(skipped.find("a/empty.png: the file is empty"), std::string::npos) << skipped;
  EXPECT_NE(skipped.find("a/loop: a link back"), std::string::npos) << skipped;
  EXPECT_NE(skipped.find("a/broken.png: a broken link"), std::string::npos) << skipped;
  EXPECT_EQ(skipped.find("DS_Store"), std::string::npos) << skipped;
  std::set<std::string> listed;
  for (const auto& f : listing.train) listed.insert(f.path);
  for (const auto& f : listing.test) listed.insert(f.path);
  EXPECT_TRUE(listed.count("a/folder.png/inner.png"));
  EXPECT_TRUE(listed.count("a/naïve name with spaces.png"));
  EXPECT_TRUE(listed.count("a/corrupt.png"));  // found only when decoded

  FolderRequest request;
  request.options.test_fraction = 0.3;
  std::ostringstream log;
  request.log = &log;
  const auto train = load_folder(dir, Split::kTrain, request);
  const auto test = load_folder(dir, Split::kTest, request);
  EXPECT_EQ(train.size() + test.size(), 8);  // a: 3 + 2 more, b: 3; not the corrupt one
  std::string all;
  for (const auto& s : train.folder->skipped) all += s + "\n";
  for (const auto& s : test.folder->skipped) all += s + "\n";
  EXPECT_NE(all.find("a/corrupt.png: "), std::string::npos) << all;
  EXPECT_NE(log.str().find("skipped"), std::string::npos) << log.str();
  request.options.strict = true;
  const auto strict = error_of([&] {
    load_folder(dir, Split::kTrain, request);
    load_folder(dir, Split::kTest, request);
  });
  EXPECT_NE(strict.find("files cannot be used (--strict)"), std::string::npos) << strict;
}

TEST(FolderLoad, MixedSizesAndColoursAreResizedAndConverted) {
  const auto dir = testing::temp_dir("folder_mixed");
  // Shorter sides 10, 12, 12, 14, 16, 30 over the training files: median 13.
  const std::vector<std::pair<int, int>> sizes = {{10, 20}, {12, 12}, {40, 12},
                                                  {14, 14}, {16, 16}, {30, 31}};
  for (size_t k = 0; k < sizes.size(); ++k) {
    const auto klass = k % 2 ? "b" : "a";
    const int channels = k == 3 ? 3 : 1;  // one colour file
    write_bytes(fs::path(dir) / "train" / klass / (std::to_string(k) + ".png"),
                encode_png(pattern(sizes[k].first, sizes[k].second, channels, int(k))));
  }
  const auto jpeg = encode_jpeg(pattern(13, 13, 3, 1), 95);
  write_bytes(fs::path(dir) / "test" / "a" / "x.jpg", jpeg);
  write_bytes(fs::path(dir) / "test" / "b" / "y.JPEG", jpeg);
  FolderRequest request;
  const auto train = load_folder(dir, Split::kTrain, request);
  EXPECT_EQ(train.folder->side, 13);
  EXPECT_EQ(train.folder->channels, 3);
  EXPECT_EQ(train.images.sizes(), (at::IntArrayRef{6, 3, 13, 13}));
  // A grey picture becomes three equal channels.
  EXPECT_TRUE(at::equal(train.images[0][0], train.images[0][2]));
  request.options.channels = 1;
  request.options.image_size = 12;
  const auto grey = load_folder(dir, Split::kTest, request);
  EXPECT_EQ(grey.images.sizes(), (at::IntArrayRef{2, 1, 12, 12}));
}

TEST(FolderLoad, StatisticsAreThoseOfTheTrainingPixels) {
  const auto dir = make_tree("folder_stats", {"a", "b"}, 5, 12, 3);
  FolderRequest request;
  request.options.test_fraction = 0.4;
  const auto train = load_folder(dir, Split::kTrain, request);
  const auto unit = train.images.to(at::kDouble).div(255.0);
  for (int64_t c = 0; c < 3; ++c) {
    const auto channel = unit.select(1, c);
    EXPECT_NEAR(train.folder->mean[c], channel.mean().item<double>(), 1e-9);
    EXPECT_NEAR(train.folder->std[c], channel.std(/*unbiased=*/false).item<double>(), 1e-9);
  }
}

TEST(FolderLoad, BeyondTheCacheFilesAreDecodedPerBatchAlike) {
  // 2 x 40 pictures of 3 x 64 x 64 (12 KiB each); a 1 MiB cache holds 85 of them,
  // so with 80 all fit, with cache_mb 0 none do.
  const auto dir = make_tree("folder_stream", {"a", "b"}, 40, 64, 3);
  FolderRequest request;
  request.options.test_fraction = 0.25;
  const auto held = load_folder(dir, Split::kTrain, request);
  ASSERT_TRUE(held.images.defined());
  request.options.cache_mb = 0;
  const auto streamed = load_folder(dir, Split::kTrain, request);
  ASSERT_FALSE(streamed.images.defined());
  ASSERT_TRUE(streamed.folder->files);
  EXPECT_EQ(streamed.folder->files->cached(), 0);
  EXPECT_EQ(streamed.folder->identity, held.folder->identity);
  const auto some = at::tensor(std::vector<int64_t>{5, 0, 59, 17}, at::kLong);
  EXPECT_TRUE(at::equal(streamed.pixels(some), held.pixels(some)));
  // A prefetched batch is the batch.
  streamed.folder->files->prefetch(some.flip(0));
  EXPECT_TRUE(at::equal(streamed.pixels(some.flip(0)), held.pixels(some.flip(0))));
  // Sources give the same batches either way.
  SourceOptions prepared;
  prepared.shift = 2;
  DatasetSource a(held, prepared), b(streamed, prepared);
  std::mt19937_64 ra(3), rb(3);
  EXPECT_TRUE(at::equal(a.get(some, &ra).images, b.get(some, &rb).images));
}

TEST(FolderLoad, IdentityFollowsTheFilesList) {
  const auto dir = make_tree("folder_identity", {"a", "b"}, 4);
  const auto before = list_image_folder(dir, 0.25, 1);
  EXPECT_EQ(list_image_folder(dir, 0.25, 1).train_identity, before.train_identity);
  // Rewritten with other contents of another size: its size changes the identity.
  write_bytes(fs::path(dir) / "a" / "0.png", encode_png(pattern(20, 20, 1, 77)));
  const auto after = list_image_folder(dir, 0.25, 1);
  EXPECT_NE(after.train_identity + after.test_identity,
            before.train_identity + before.test_identity);
}

TEST(PicturePreparation, ResizeAveragesAreasAndCropsTheCentre) {
  // A 4 x 2 picture to side 1: shorter side 2 -> 1, width 4 -> 2, then the centre 1 x 1.
  Picture p{4, 2, 1, {0, 40, 80, 120, 10, 50, 90, 130}};
  const auto half = resize_and_crop(p, 1);
  // Half size: columns {0,1} -> (0+40+10+50)/4 = 25, {2,3} -> (80+120+90+130)/4 = 105;
  // the centre crop of a 2 x 1 picture to 1 x 1 starts at column (2 - 1) / 2 = 0.
  ASSERT_EQ(half.width, 1);
  EXPECT_EQ(half.pixels[0], 25);
  const Picture same = pattern(9, 9, 3, 4);
  EXPECT_EQ(resize_and_crop(same, 9).pixels, same.pixels);
  // A 2x enlargement repeats each pixel in a 2 x 2 block (area sampling).
  const auto big = resize_and_crop(pattern(3, 3, 1, 0), 6);
  for (int y = 0; y < 6; ++y) {
    for (int x = 0; x < 6; ++x) {
      EXPECT_EQ(big.pixels[y * 6 + x], pattern(3, 3, 1, 0).pixels[(y / 2) * 3 + x / 2]);
    }
  }
  // PNG round trip of a colour picture through the decoder.
  const auto back = decode_picture(encode_png(same), "same.png", 3);
  EXPECT_EQ(back.pixels, same.pixels);
  // Grey from colour by stb's weights: (77 r + 150 g + 29 b) >> 8.
  Picture rgb{1, 1, 3, {200, 100, 50}};
  EXPECT_EQ(decode_picture(encode_png(rgb), "rgb.png", 1).pixels[0],
            (77 * 200 + 150 * 100 + 29 * 50) >> 8);
}

TEST(PicturePreparation, CropsAndFlipsDrawnFromTheStream) {
  const auto images = at::arange(2 * 1 * 4 * 4, at::kFloat).view({2, 1, 4, 4});
  const auto centre = crop_images(images, 2, nullptr);
  EXPECT_TRUE(at::equal(centre, images.narrow(2, 1, 2).narrow(3, 1, 2)));
  std::mt19937_64 rng(1), same(1);
  const auto a = crop_images(images, 2, &rng), b = crop_images(images, 2, &same);
  EXPECT_TRUE(at::equal(a, b));
  // Every crop is a 2 x 2 window of its image.
  for (int64_t k = 0; k < 2; ++k) {
    bool found = false;
    for (int y = 0; y <= 2; ++y) {
      for (int x = 0; x <= 2; ++x)
        found |= at::equal(a[k], images[k].narrow(1, y, 2).narrow(2, x, 2));
    }
    EXPECT_TRUE(found);
  }
  std::mt19937_64 flips(5);
  const auto many = at::arange(64 * 3, at::kFloat).view({64, 1, 1, 3});
  const auto flipped = random_flip(many, flips);
  int64_t mirrored = 0;
  for (int64_t k = 0; k < 64; ++k) {
    const bool same_row = at::equal(flipped[k], many[k]);
    EXPECT_TRUE(same_row || at::equal(flipped[k], many[k].flip({2})));
    mirrored += !same_row;
  }
  EXPECT_GT(mirrored, 16);  // about half of 64
  EXPECT_LT(mirrored, 48);
}

TEST(PicturePreparation, PredictorPreparesAsTheModelsDataWas) {
  CapsNetConfig config = testing::tiny_config();
  config.in_channels = 3;
  config.num_classes = 3;
  DataShape shape;
  shape.image_size = config.image_size;  // 12
  shape.channels = 3;
  shape.classes = 3;
  shape.class_names = {"cat", "dog", "fox"};
  shape.preparation = Preparation::kResize;
  shape.resize = 16;
  TrainOptions options;
  Predictor predictor(CapsNet(config).ptr(), options, shape);
  EXPECT_EQ(predictor.class_name(1), "dog");
  const auto picture = pattern(32, 40, 3, 2);
  const auto x = predictor.prepare_picture(encode_png(picture), "p.png");
  EXPECT_EQ(x.sizes(), (at::IntArrayRef{1, 3, 12, 12}));
  const auto expected =
      picture_tensor(centre_crop(resize_and_crop(picture, 16), 12)).to(at::kFloat) / 255.0;
  EXPECT_TRUE(at::allclose(x[0], expected));
  EXPECT_EQ(predictor.classify(x).lengths.sizes(), (at::IntArrayRef{1, 3}));
}

TEST(FolderRegistry, DataShapeRecordsTheFolder) {
  const auto dir = make_tree("folder_shape", {"cat", "dog"}, 5, 20, 3);
  DataRequest request;
  request.dir = dir;
  request.folder.image_size = 16;
  request.folder.crop = 12;
  request.folder.test_fraction = 0.2;
  const auto train = load_dataset("folder", request);
  const auto shape = data_shape(dataset_info("folder"), train, 12);
  EXPECT_EQ(shape.image_size, 12);
  EXPECT_EQ(shape.resize, 16);
  EXPECT_EQ(shape.channels, 3);
  EXPECT_EQ(shape.class_names, (std::vector<std::string>{"cat", "dog"}));
  ASSERT_EQ(shape.test_files.size(), 2u);  // one of each class's five
  EXPECT_EQ(shape.test_files[0].substr(0, 4), "cat/");
  EXPECT_EQ(shape.test_files[1].substr(0, 4), "dog/");
  EXPECT_EQ(shape.mean.size(), 3u);
  // Round trip through JSON, as checkpoints store it.
  const auto back = nlohmann::json(shape).get<DataShape>();
  EXPECT_EQ(back.class_names, shape.class_names);
  EXPECT_EQ(back.test_files, shape.test_files);
  EXPECT_EQ(back.preparation, Preparation::kResize);
  // A model fitted to it.
  TrainOptions options;
  options.dataset = "folder";
  options.data_dir = dir;
  options.model = testing::tiny_config();
  const auto fitted = fitted_to(options, shape);
  EXPECT_EQ(fitted.model.image_size, 12);
  EXPECT_EQ(fitted.model.in_channels, 3);
  EXPECT_EQ(fitted.model.num_classes, 2);
  const auto prepared = source_options(fitted, shape);
  EXPECT_EQ(prepared.crop, 12);
}

}  // namespace
}  // namespace capsnet
