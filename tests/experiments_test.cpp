// The generated data sets of the paper's other experiments: MultiMNIST
// (Section 6). Checked against their definitions: labels, overlap
// statistics, the overlay, reproducibility.
#include "capsnet/data/multimnist.h"

#include <gtest/gtest.h>

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
  // The image is the overlay (pixel-wise maximum) of the two digits alone.
  EXPECT_TRUE(batch.images.equal(std::get<0>(batch.recon_targets.max(1))));
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

} // namespace
} // namespace capsnet
