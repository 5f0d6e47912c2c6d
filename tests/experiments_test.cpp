// The baseline CNN of Table 1, and the generated data sets of the paper's other experiments: MultiMNIST
// (Section 6) and the framed and affinely transformed digits of the affine-
// robustness test (Section 5.2). Checked against their definitions: labels,
// overlap statistics, the overlay, transformation ranges and geometry (angles
// and centroids from image moments), reproducibility.
#include "capsnet/data/affine.h"
#include "capsnet/data/multimnist.h"
#include "capsnet/engine/checkpoint.h"
#include "capsnet/engine/trainer.h"
#include "capsnet/model/baseline_cnn.h"

#include <gtest/gtest.h>
#include <torch/optim/adam.h>

#include <cmath>
#include <filesystem>
#include <unistd.h>
#include <map>
#include <set>

namespace capsnet {
namespace {

// 200 digits of 10 classes: digit i is a filled square of side 6 + i % 10 with
// value 1 + i % 200 (distinct), so each can be found again where it was put.
Dataset squares(int64_t n = 200) {
  Dataset data;
  data.images = at::zeros({n, 1, 28, 28}, at::kByte);
  data.labels = at::arange(n, at::kLong) % 10;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t side = 6 + i % 10, at = (28 - side) / 2;
    data.images[i][0].narrow(0, at, side).narrow(1, at, side).fill_(1 + i % 200);
  }
  return data;
}

TEST(MultiMnist, PairsTwoDigitsOfDifferentClassesAndOverlaysThem) {
  const auto base = squares();
  const MultiMnistSource source(base, {36, 4, 3, /*seed=*/5});
  EXPECT_EQ(source.size(), 600);
  const auto indices = at::arange(0, 600, 7, at::kLong);
  const auto batch = source.get(indices, nullptr);
  const int64_t B = indices.size(0);
  ASSERT_EQ(batch.images.sizes(), (std::vector<int64_t>{B, 1, 36, 36}));
  ASSERT_EQ(batch.labels.sizes(), (std::vector<int64_t>{B, 2}));
  ASSERT_EQ(batch.recon_targets.sizes(), (std::vector<int64_t>{B, 2, 1, 36, 36}));
  EXPECT_TRUE(batch.targets.sum(1).eq(2).all().item<bool>()); // two positives each
  // The image is the overlay (the sum, clipped at 1) of the two digits alone.
  EXPECT_TRUE(batch.images.equal(batch.recon_targets.sum(1).clamp_max(1.0)));
  for (int64_t k = 0; k < B; ++k) {
    const auto p = source.pair(indices[k].item<int64_t>());
    EXPECT_EQ(p.first, indices[k].item<int64_t>() % 200);
    EXPECT_NE(p.first_class, p.second_class);
    EXPECT_EQ(p.first_class, base.labels[p.first].item<int64_t>());
    EXPECT_EQ(p.second_class, base.labels[p.second].item<int64_t>());
    EXPECT_EQ(batch.labels[k][0].item<int64_t>(), p.first_class);
    EXPECT_EQ(batch.labels[k][1].item<int64_t>(), p.second_class);
    EXPECT_EQ(batch.targets[k][p.first_class].item<float>(), 1.0f);
    EXPECT_EQ(batch.targets[k][p.second_class].item<float>(), 1.0f);
    // Each reconstruction target is its base digit, whole, at its shift.
    const std::pair<int64_t, std::array<int64_t, 2>> placed[] = {{p.first, p.first_shift},
                                                                  {p.second, p.second_shift}};
    for (int64_t d = 0; d < 2; ++d) {
      const auto& [which, shift] = placed[d];
      const auto digit = base.images[which][0].to(at::kFloat) / 255.0;
      const auto target = batch.recon_targets[k][d][0];
      EXPECT_TRUE(target.narrow(0, 4 + shift[0], 28).narrow(1, 4 + shift[1], 28).equal(digit));
      EXPECT_NEAR(target.sum().item<double>(), digit.sum().item<double>(), 1e-4); // nothing else
    }
  }
}

TEST(MultiMnist, ShiftsAndOverlapMatchThePaper) {
  const MultiMnistSource source(squares(), {36, 4, 100, /*seed=*/1});
  double overlap = 0;
  std::set<int64_t> shifts;
  std::map<int64_t, int64_t> partners; // second class, for digits of class 0
  for (int64_t i = 0; i < source.size(); ++i) {
    const auto p = source.pair(i);
    overlap += p.box_overlap(28);
    for (auto s : {p.first_shift[0], p.first_shift[1], p.second_shift[0], p.second_shift[1]}) {
      EXPECT_LE(std::abs(s), 4);
      shifts.insert(s);
    }
    if (p.first_class == 0) ++partners[p.second_class];
  }
  overlap /= source.size();
  // Uniform shifts in [-4, 4] give a mean box overlap of 0.7996: the paper's 80%.
  EXPECT_NEAR(overlap, 0.7996, 0.005);
  EXPECT_EQ(shifts.size(), 9u);
  EXPECT_EQ(partners.count(0), 0u);
  EXPECT_EQ(partners.size(), 9u); // partners of every other class,
  for (const auto& [label, count] : partners) { // about equally often (2000 draws)
    EXPECT_NEAR(count, 2000 / 9.0, 70) << "class " << label;
  }
}

TEST(MultiMnist, IsReproducibleFromItsSeedAndTheStepsStream) {
  const auto base = squares();
  const MultiMnistSource a(base, {36, 4, 2, 7}), b(base, {36, 4, 2, 7}), c(base, {36, 4, 2, 8});
  const auto idx = at::arange(0, 400, 3, at::kLong);
  EXPECT_TRUE(a.get(idx, nullptr).images.equal(b.get(idx, nullptr).images));
  EXPECT_FALSE(a.get(idx, nullptr).images.equal(c.get(idx, nullptr).images));
  // Training: pairs and shifts from the step's stream, the same for the same stream.
  std::mt19937_64 r1(3), r2(3), r3(4);
  const auto t1 = a.get(idx, &r1), t2 = a.get(idx, &r2), t3 = a.get(idx, &r3);
  EXPECT_TRUE(t1.images.equal(t2.images));
  EXPECT_TRUE(t1.labels.equal(t2.labels));
  EXPECT_FALSE(t1.images.equal(t3.images));
  EXPECT_FALSE(t1.images.equal(a.get(idx, nullptr).images));
  EXPECT_TRUE(t1.labels.select(1, 0).equal(base.labels.index_select(0, idx % 200)));
}

TEST(MultiMnist, RefusesWhatCannotBeGenerated) {
  EXPECT_THROW(MultiMnistSource(squares(), {30, 4, 1, 0}), c10::Error); // 28 + 8 > 30
  auto one_class = squares();
  one_class.labels.zero_();
  EXPECT_THROW(MultiMnistSource(one_class, {}), c10::Error);
  EXPECT_THROW(MultiMnistSource(squares(), {36, 4, 1, 0}).pair(200), c10::Error);
}

int64_t count_parameters(torch::nn::Module& module) {
  int64_t n = 0;
  for (const auto& p : module.parameters()) n += p.numel();
  return n;
}

TEST(BaselineCnn, HasThePapersThirtyFiveMillionParameters) {
  BaselineCnn paper;
  // 5x5 "same" convolutions of 256, 256, 128 channels, no pooling: 28*28*128
  // features into 328, 192 and 10 units.
  const int64_t expected = (25 * 256 + 256) + (25 * 256 * 256 + 256) + (25 * 256 * 128 + 128) +
                           (28 * 28 * 128 * 328 + 328) + (328 * 192 + 192) + (192 * 10 + 10);
  EXPECT_EQ(expected, 35445522);
  EXPECT_EQ(count_parameters(*paper), expected);
  EXPECT_EQ(paper->config.parameter_count(), expected);
  // The authors' code pools (2x2) after every convolution: far fewer.
  BaselineCnnConfig pooled;
  pooled.pool_after = {0, 1, 2};
  BaselineCnn small(pooled);
  EXPECT_EQ(count_parameters(*small), pooled.parameter_count());
  EXPECT_EQ(pooled.feature_side(), 3);
  BaselineCnnConfig multi;
  multi.image_size = 36;
  EXPECT_EQ(BaselineCnn(multi)->forward(at::rand({2, 1, 36, 36})).sizes(),
            (std::vector<int64_t>{2, 10}));
  BaselineCnnConfig bad;
  bad.pool_after = {3};
  EXPECT_THROW(bad.validate(), std::invalid_argument);
}

TEST(BaselineCnn, CrossEntropyOverOneOrSeveralLabels) {
  torch::manual_seed(0);
  BaselineCnnConfig tiny;
  tiny.image_size = 8;
  tiny.conv_channels = {4, 4, 2};
  tiny.hidden = {32, 32};
  BaselineCnnTask task{BaselineCnn(tiny)};
  task.module().eval(); // no dropout: deterministic
  Batch batch;
  batch.images = at::rand({3, 1, 8, 8});
  batch.labels = at::tensor({2, 7, 0}, at::kLong);
  batch.targets = multi_hot(batch.labels, 10);
  auto out = task.forward(batch, false);
  EXPECT_TRUE(out.scores.sum(1).allclose(at::ones({3}), 1e-5, 1e-6)); // probabilities
  double expected = 0;
  for (int64_t b = 0; b < 3; ++b) {
    expected -= std::log(out.scores[b][batch.labels[b].item<int64_t>()].item<double>()) / 3;
  }
  EXPECT_NEAR(out.loss.item<double>(), expected, 1e-5);
  // Two labels each: half the target on each.
  batch.labels = at::tensor({2, 7, 7, 1, 0, 9}, at::kLong).view({3, 2});
  batch.targets = multi_hot(batch.labels, 10);
  out = task.forward(batch, false);
  expected = 0;
  for (int64_t b = 0; b < 3; ++b) {
    for (int64_t j = 0; j < 2; ++j) {
      expected -= 0.5 * std::log(out.scores[b][batch.labels[b][j].item<int64_t>()].item<double>()) / 3;
    }
  }
  EXPECT_NEAR(out.loss.item<double>(), expected, 1e-5);
  // Dropout acts in training only.
  task.module().train();
  EXPECT_FALSE(task.forward(batch, true).scores.equal(task.forward(batch, true).scores));
}

TEST(BaselineCnn, CheckpointsRoundTrip) {
  const auto dir = std::filesystem::temp_directory_path() /
                   ("capsnet-baseline-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  TrainOptions options;
  options.model_name = "baseline-cnn";
  options.baseline.conv_channels = {4, 4, 2};
  options.baseline.hidden = {8, 8};
  torch::manual_seed(3);
  BaselineCnn model(options.baseline);
  TrainingState state;
  state.epoch = 2;
  save_checkpoint((dir / "b.pt").string(), *model, nullptr, options, DataShape{}, state);
  auto loaded = load_checkpoint((dir / "b.pt").string());
  ASSERT_TRUE(std::dynamic_pointer_cast<BaselineCnnImpl>(loaded.network));
  EXPECT_EQ(loaded.info->name, "baseline-cnn");
  EXPECT_EQ(loaded.options.model_name, "baseline-cnn");
  EXPECT_EQ(loaded.state.epoch, 2);
  const auto a = model->parameters(), b = loaded.module().parameters();
  ASSERT_EQ(a.size(), b.size());
  for (size_t k = 0; k < a.size(); ++k) EXPECT_TRUE(a[k].equal(b[k]));
  EXPECT_THROW(loaded.capsnet("export"), CheckpointError);
  std::filesystem::remove_all(dir);
}

TEST(BaselineCnn, LearnsThroughTheTrainer) {
  Dataset data; // class k: a bright bar at row 2k + 4
  data.images = at::zeros({120, 1, 28, 28}, at::kByte);
  data.labels = at::arange(120, at::kLong) % 10;
  for (int64_t i = 0; i < 120; ++i) data.images[i][0][2 * (i % 10) + 4].narrow(0, 4, 20).fill_(255);
  const DatasetSource train(data, 0, false);
  torch::manual_seed(1);
  BaselineCnnConfig small;
  small.conv_channels = {8, 8, 4};
  small.pool_after = {0, 1};
  small.hidden = {32, 16};
  small.dropout = 0.1;
  BaselineCnnTask task{BaselineCnn(small)};
  torch::optim::Adam adam(task.module().parameters(), torch::optim::AdamOptions(3e-3));
  const EpochSampler sampler(train.size(), 20, 2);
  Trainer trainer(task, train, sampler, adam);
  trainer.evaluation = {&train, 60};
  TrainingState state;
  EXPECT_GE(trainer.fit(state, 15).last_eval.accuracy(), 0.95);
}

// Orientation (degrees, of the principal axis in (column, row) coordinates)
// and centroid (row, column) of an image's mass.
struct Moments {
  double angle, row, col;
};
Moments moments_of(const at::Tensor& image) {
  const auto m = image.to(at::kDouble);
  const auto rows = at::arange(m.size(0), at::kDouble).unsqueeze(1).expand_as(m);
  const auto cols = at::arange(m.size(1), at::kDouble).unsqueeze(0).expand_as(m);
  const double mass = m.sum().item<double>();
  const double r = (m * rows).sum().item<double>() / mass, c = (m * cols).sum().item<double>() / mass;
  const double mu20 = (m * (cols - c).pow(2)).sum().item<double>();
  const double mu02 = (m * (rows - r).pow(2)).sum().item<double>();
  const double mu11 = (m * (cols - c) * (rows - r)).sum().item<double>();
  return {0.5 * std::atan2(2 * mu11, mu20 - mu02) * 180 / M_PI, r, c};
}

TEST(Framed, ExpandedMnistPlacesTheWholeDigitAnywhereInTheFrame) {
  const auto base = squares();
  const FramedSource source(base, {40, /*affine=*/false, {}, /*seed=*/3});
  std::set<int64_t> rows, cols;
  for (int64_t i = 0; i < source.size(); ++i) {
    const auto p = source.params(i);
    EXPECT_LE(std::abs(p.ty), 6); // 28 + 2 * 6 = 40
    EXPECT_LE(std::abs(p.tx), 6);
    rows.insert(p.ty);
    cols.insert(p.tx);
  }
  EXPECT_EQ(rows.size(), 13u);
  EXPECT_EQ(cols.size(), 13u);
  const auto idx = at::arange(0, 200, 9, at::kLong);
  const auto batch = source.get(idx, nullptr);
  ASSERT_EQ(batch.images.sizes(), (std::vector<int64_t>{idx.size(0), 1, 40, 40}));
  EXPECT_TRUE(batch.labels.equal(base.labels.index_select(0, idx)));
  for (int64_t k = 0; k < idx.size(0); ++k) {
    const auto p = source.params(idx[k].item<int64_t>());
    const auto digit = base.images[idx[k].item<int64_t>()][0].to(at::kFloat) / 255.0;
    const auto placed = batch.images[k][0];
    EXPECT_TRUE(placed.narrow(0, 6 + p.ty, 28).narrow(1, 6 + p.tx, 28).equal(digit));
    EXPECT_NEAR(placed.sum().item<double>(), digit.sum().item<double>(), 1e-3);
  }
}

TEST(Framed, AffineTransformationsStayInAffNistsRangesAndKeepTheInk) {
  const auto base = squares();
  const FramedSource source(base, {40, /*affine=*/true, {}, /*seed=*/4});
  double lo_rot = 0, hi_rot = 0, lo_shear = 0, hi_shear = 0, lo_scale = 2, hi_scale = 0;
  for (int64_t i = 0; i < source.size(); ++i) {
    const auto p = source.params(i);
    lo_rot = std::min(lo_rot, p.rotation_degrees), hi_rot = std::max(hi_rot, p.rotation_degrees);
    lo_shear = std::min(lo_shear, p.shear), hi_shear = std::max(hi_shear, p.shear);
    lo_scale = std::min(lo_scale, p.scale), hi_scale = std::max(hi_scale, p.scale);
  }
  EXPECT_GE(lo_rot, -20);
  EXPECT_LE(hi_rot, 20);
  EXPECT_LT(lo_rot, -18); // and reach the ends of them (200 draws)
  EXPECT_GT(hi_rot, 18);
  EXPECT_GE(lo_shear, -0.2);
  EXPECT_LE(hi_shear, 0.2);
  EXPECT_LT(lo_shear, -0.18);
  EXPECT_GT(hi_shear, 0.18);
  EXPECT_GE(lo_scale, 0.8);
  EXPECT_LE(hi_scale, 1.2);
  EXPECT_LT(lo_scale, 0.82);
  EXPECT_GT(hi_scale, 1.18);
  // The ink survives whole: mass scales by det A = scale^2, nothing is cut off.
  const auto idx = at::arange(0, 200, 3, at::kLong);
  const auto batch = source.get(idx, nullptr);
  for (int64_t k = 0; k < idx.size(0); ++k) {
    const auto p = source.params(idx[k].item<int64_t>());
    const double before = base.images[idx[k].item<int64_t>()].to(at::kDouble).sum().item<double>() / 255;
    const double after = batch.images[k].to(at::kDouble).sum().item<double>();
    // (Bilinear resampling of sharp-edged squares conserves it to a few per cent.)
    EXPECT_NEAR(after / (before * p.scale * p.scale), 1.0, 0.06) << "example " << k;
    const auto border = batch.images[k][0];
    EXPECT_EQ(border[0].sum().item<double>() + border[39].sum().item<double>() +
                  border.select(1, 0).sum().item<double>() + border.select(1, 39).sum().item<double>(),
              0.0);
  }
  // Reproducible from the seed; training draws from the step's stream.
  const FramedSource again(base, {40, true, {}, 4}), other(base, {40, true, {}, 5});
  EXPECT_TRUE(again.get(idx, nullptr).images.equal(batch.images));
  EXPECT_FALSE(other.get(idx, nullptr).images.equal(batch.images));
  std::mt19937_64 r1(1), r2(1);
  EXPECT_TRUE(source.get(idx, &r1).images.equal(source.get(idx, &r2).images));
}

TEST(Framed, RotationShearScaleAndTranslationDoWhatTheySay) {
  // A horizontal bar, 22 pixels long and 2 wide, centred in a 28x28 digit
  // (its centroid is the frame's centre, about which A acts).
  auto bar = at::zeros({1, 1, 28, 28});
  bar[0][0][13].narrow(0, 3, 22).fill_(1);
  bar[0][0][14].narrow(0, 3, 22).fill_(1);
  const auto straight = moments_of(frame_and_transform(bar, {AffineParams{}}, 40)[0][0]);
  EXPECT_NEAR(straight.angle, 0, 1e-6);
  EXPECT_NEAR(straight.row, 19.5, 1e-6);
  EXPECT_NEAR(straight.col, 19.5, 1e-6);
  for (const double degrees : {-20.0, 12.0, 30.0}) {
    AffineParams p;
    p.rotation_degrees = degrees;
    p.ty = 3;
    p.tx = -5;
    const auto m = moments_of(frame_and_transform(bar, {p}, 40)[0][0]);
    EXPECT_NEAR(m.angle, degrees, 0.5); // rotates from +column towards +row
    EXPECT_NEAR(m.row, straight.row + 3, 0.05);
    EXPECT_NEAR(m.col, straight.col - 5, 0.05);
  }
  // Shear moves each row by shear * (its offset from the centre): a vertical
  // bar leans to atan(1 / shear) from the column axis.
  const auto upright = bar.transpose(2, 3).contiguous();
  AffineParams sheared;
  sheared.shear = 0.2;
  EXPECT_NEAR(moments_of(frame_and_transform(upright, {sheared}, 40)[0][0]).angle,
              std::atan2(1.0, 0.2) * 180 / M_PI, 0.5);
  // Scale: the bar's spread along its length grows by the factor.
  auto spread = [](const at::Tensor& image) {
    const auto m = image.to(at::kDouble);
    const auto cols = at::arange(m.size(1), at::kDouble).unsqueeze(0).expand_as(m);
    const double mass = m.sum().item<double>(), c = (m * cols).sum().item<double>() / mass;
    return std::sqrt((m * (cols - c).pow(2)).sum().item<double>() / mass);
  };
  for (const double factor : {0.8, 1.2}) {
    AffineParams scaled;
    scaled.scale = factor;
    const auto resized = frame_and_transform(bar, {scaled}, 40)[0][0];
    EXPECT_NEAR(spread(resized) / spread(frame_and_transform(bar, {AffineParams{}}, 40)[0][0]),
                factor, 0.02 * factor);
  }
}

} // namespace
} // namespace capsnet
