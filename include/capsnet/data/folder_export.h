#pragma once

// `capsnet data export-folder`: a registered data set written as the folder
// tree that --dataset folder reads.

#include <cstdint>
#include <ostream>
#include <string>

namespace capsnet {

/// What export_folder writes, and where.
struct FolderExportOptions {
  std::string dataset = "mnist"; ///< a registered data set of one label per image, not a folder
  std::string data_dir;          ///< its directory; empty: the data set's own
  std::string out;               ///< the folder to write (new or empty, unless force)
  /// \var limit
  /// The first N training images (0: all).
  int64_t limit = 0, test_limit = 0; ///< the first N training and test images (0: all)
  std::string format = "png";    ///< png (the same pixels) or jpeg (quality 95)
  bool force = false;            ///< write into a folder that is not empty
  std::ostream* log = nullptr;   ///< progress and the pictures written; null: silent
  bool terminal = false;         ///< rewrite the progress line in place
};

/// Writes both splits as OUT/SPLIT/CLASS/NNNNN.EXT, NNNNN the example's index
/// in its split (so that a file names the image it came from), CLASS the
/// class's name made safe for a file system. Returns the pictures written.
/// Throws std::invalid_argument for a data set that cannot be a folder tree
/// or an `out` that holds files, DataError and WriteError.
int64_t export_folder(const FolderExportOptions& options);

} // namespace capsnet
