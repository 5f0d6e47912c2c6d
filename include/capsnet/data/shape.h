#pragma once

#include "capsnet/io/enum_names.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace capsnet {

/// How a picture becomes a model's input (predict, serve).
enum class Preparation {
  kDigit,   ///< as MNIST was made: grey, ink bright, fitted in a box, centred by mass
  kResize,  ///< shorter side to `resize`, centre crop, then the centre image_size crop
};

CAPSNET_ENUM_NAMES(Preparation, "picture preparation",
                   {{Preparation::kDigit, "digit"}, {Preparation::kResize, "resize"}})

/// What a model is built for and how its data was prepared: the data set's
/// description, recorded in checkpoints.
struct DataShape {
  int64_t image_size = 28;  ///< square images, as the network takes them
  int64_t channels = 1;     ///< 1 (grey) or 3 (colour)
  int64_t classes = 10;     ///< K, the number of classes the network tells apart
  int64_t labels_per_image = 1;  ///< MultiMNIST: 2
  /// The classes' names (a folder data set's folder names, sorted); empty:
  /// the class indices.
  std::vector<std::string> class_names;
  /// Per-channel mean and standard deviation of the training pixels in
  /// [0, 1], what --normalize standardises with; empty: MNIST's (kMnistMean).
  std::vector<double> mean, std;
  /// \var std
  /// The standard deviations that go with `mean`; empty: MNIST's (kMnistStd).
  Preparation preparation = Preparation::kDigit;  ///< how predict and serve prepare pictures
  /// kResize: the side pictures are resized to (shorter side, then a centre
  /// crop) before the image_size crop; 0: image_size.
  int64_t resize = 0;
  /// A folder split by --test-fraction: the held-out files (relative to the
  /// folder), so that evaluation and resumption see the same split.
  std::vector<std::string> test_files;
  /// --validation-split: the training examples held out (indices into the
  /// training split as loaded, sorted), so that a resumed run holds out the same.
  std::vector<int64_t> validation;

  /// The shape proper: size, channels, classes and labels per image.
  bool operator==(const DataShape& o) const {
    return image_size == o.image_size && channels == o.channels && classes == o.classes &&
           labels_per_image == o.labels_per_image;
  }
  /// The name of class k: class_names[k], or k as text.
  std::string class_name(int64_t k) const;
};

NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(DataShape, image_size, channels, classes,
                                                labels_per_image, class_names, mean, std,
                                                preparation, resize, test_files,
                                                validation)

}  // namespace capsnet
