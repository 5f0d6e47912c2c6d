#pragma once

// MultiMNIST (Section 6 of the paper): two digits of different classes from
// the same split, each shifted by up to 4 pixels in a 36x36 frame, overlaid.
// (The authors' input_data/mnist/mnist_shift.py, in Sarasra/models
// research/capsules, draws partners of another class from the same split and
// merges by a clipped sum; its README's command shifts by up to 6 in the same
// 36x36 frame, cropping; the paper's text says 4, which is what this does.)
// Generated on the fly, reproducibly: a training batch draws its pairs and
// shifts from the step's random stream; the test set's example i is a fixed
// function of (seed, i).

#include "capsnet/data/batch.h"

#include <array>
#include <cstdint>

namespace capsnet {

/// How MultiMnistSource generates its examples.
struct MultiMnistOptions {
  int64_t frame = 36;    ///< side of the generated images
  int64_t max_shift = 4; ///< each digit moves up to this many pixels each way from the centre
  /// Test-set pairs per base digit: the fixed set has base.size() * this examples.
  int64_t pairs_per_digit = 1;
  uint64_t seed = 0; ///< the fixed set's seed (training uses the step's stream)
};

/// One generated example: the base digits, their classes, where each sits.
struct MultiMnistPair {
  /// \var first
  /// The first digit's index into the base data set.
  int64_t first = 0, second = 0;           ///< indices into the base data set
  /// \var first_class
  /// The first digit's class.
  /// \var second_class
  /// The second digit's class (never the first's).
  int64_t first_class = 0, second_class = 0;
  std::array<int64_t, 2> first_shift{};    ///< (dy, dx) from the centred position
  std::array<int64_t, 2> second_shift{};   ///< the same for the second digit
  /// Area shared by the two 28x28 boxes over one box's area (the paper's
  /// "overlap", 80% on average at shifts of up to 4 pixels).
  double box_overlap(int64_t side) const;
};

/// Batches of overlaid pairs: images float [B, 1, F, F] in [0, 1], the sum of
/// the two shifted digits clipped at 1 (as the authors' mnist_shift.py merges
/// them: np.minimum(a + b, 255)); labels int64 [B, 2] (first,
/// second); targets multi-hot [B, K]; recon_targets [B, 2, 1, F, F], each
/// digit alone where it sits (the decoder reconstructs each from its capsule).
class MultiMnistSource : public BatchSource {
 public:
  /// `base`: a split of MNIST (28x28, at least two classes).
  MultiMnistSource(Dataset base, MultiMnistOptions options);
  int64_t size() const override { return base_.size() * options_.pairs_per_digit; }
  int64_t num_classes() const override { return base_.num_classes; }
  /// With `rng` (training): example i overlays base digit i % N with a
  /// partner and shifts drawn from rng. Without: the fixed example i.
  Batch get(const at::Tensor& indices, std::mt19937_64* rng) const override;
  /// What get() makes of example `index` (from `rng` when given).
  MultiMnistPair pair(int64_t index, std::mt19937_64* rng = nullptr) const;
  /// The options this source was made with.
  const MultiMnistOptions& options() const { return options_; }

 private:
  Dataset base_;
  MultiMnistOptions options_;
  at::Tensor labels_cpu_; // int64 [N]
};

} // namespace capsnet
