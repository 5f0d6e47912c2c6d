#pragma once

// Figures as PNG files, drawn with cairo: grids of labelled images
// (reconstructions, perturbations, worst errors), line plots (training
// curves) and a confusion matrix. No LibTorch here.

#include "capsnet/image/image.h"

#include <istream>
#include <string>
#include <vector>

namespace capsnet::viz {

/// A colour, channels in [0, 1].
struct Tint {
  /// \var r
  /// Red.
  /// \var g
  /// Green.
  /// \var b
  /// Blue.
  float r = 1, g = 1, b = 1;
};

/// One image of a coloured cell, drawn in `tint`.
struct Layer {
  GrayImage image; ///< the layer's pixels, in [0, 1]
  Tint tint;       ///< what a pixel of 1 adds to the cell's colour
};

/// One image of a grid, with its caption.
struct Cell {
  GrayImage image;     ///< drawn white on black, each pixel a scale x scale block
  std::string caption; ///< below the image; may be empty
  /// When not empty, drawn instead of `image`: the sum of each layer's pixels
  /// times its tint, clipped to 1 per channel (Figure 5's two reconstructions
  /// in red and green, yellow where they meet). `image` still sets the size;
  /// the layers must have that size.
  std::vector<Layer> layers;
};

/// A row of cells, with a label on its left.
struct GridRow {
  std::string label; ///< left of the row; may be empty
  std::vector<Cell> cells; ///< left to right
};

/// Rows of cells under a heading.
struct GridSection {
  std::string heading; ///< above the section; may be empty
  std::vector<GridRow> rows; ///< top to bottom
};

/// A figure of labelled image grids: a title above sections of rows of cells.
struct GridFigure {
  std::string title;                 ///< at the top; may be empty
  std::vector<GridSection> sections; ///< top to bottom
  int scale = 2;                     ///< each image pixel drawn as a scale x scale block
};

/// Where a grid's image pixels landed: cell_x[s][r][c], cell_y[s][r][c] are
/// the top-left corner of cell c of row r of section s.
struct GridLayout {
  /// The figure's width in pixels.
  int width = 0, height = 0; ///< the figure's height in pixels
  /// The x of each cell's top-left corner, [section][row][cell].
  std::vector<std::vector<std::vector<int>>> cell_x, cell_y; ///< its y, likewise
};

/// Draws `figure` and writes it to `path`; returns the layout. Throws
/// ImageError when the file cannot be written.
GridLayout write_grid_png(const std::string& path, const GridFigure& figure);

/// One line of a plot: its points and its name in the legend.
struct Series {
  std::string name; ///< in the legend
  /// The points' x coordinates.
  std::vector<double> x, y; ///< their y coordinates, one for each x
};

/// One plot of write_plot_png: its axes, its title and its lines.
struct Panel {
  /// \var title
  /// Above the plot.
  /// \var x_label
  /// Below the x axis.
  /// \var y_label
  /// Beside the y axis.
  std::string title, x_label, y_label;
  std::vector<Series> series; ///< one line each
};

/// Line plots side by side, with axes, ticks and a legend per panel.
void write_plot_png(const std::string& path, const std::string& title,
                    const std::vector<Panel>& panels);

/// The panels of `capsnet plot` (loss; accuracy in %; train and test) from
/// the rows of a run's metrics.jsonl. Throws std::invalid_argument naming
/// `source`, the line and the problem for a line that is not a metrics row,
/// and when there is no row.
std::vector<Panel> training_curves(std::istream& metrics, const std::string& source);

/// What plot_run drew.
struct RunPlot {
  size_t epochs = 0;             ///< evaluated epochs plotted
  double last_test_accuracy = 0; ///< in %
};
/// `capsnet plot`: the training curves of the run in `run_dir` (its
/// metrics.jsonl) drawn to `out`. Throws std::invalid_argument for a
/// directory without a readable metrics.jsonl (naming it) or an `out` that is
/// one of the run's files, and what training_curves throws.
RunPlot plot_run(const std::string& run_dir, const std::string& out);

/// A confusion matrix (rows: true class, columns: predicted) as a heat map of
/// each row's fractions, with the counts written in the cells.
void write_confusion_png(const std::string& path, const std::string& title,
                         const std::vector<std::vector<int64_t>>& counts);

} // namespace capsnet::viz
