// Figures (cairo): grids of images, plots and confusion matrices, read back
// as images. Built with -DCAPSNET_WITH_FIGURES=ON only.
#include "capsnet/viz/figure.h"
#include "capsnet/image/image.h"
#include "test_util.h"

#include <gtest/gtest.h>
#include <stb_image.h>

#include <array>
#include <cmath>
#include <limits>
#include <memory>

namespace capsnet {
namespace {

TEST(GridFigure, ImagesLandWhereTheLayoutSays) {
  const auto dir = testing::temp_dir("grid");
  viz::GridFigure figure;
  figure.title = "test";
  figure.scale = 2;
  GrayImage white(28, 28, 1.0f), gradient(28, 28);
  for (int y = 0; y < 28; ++y) {
    for (int x = 0; x < 28; ++x) gradient.at(x, y) = x / 27.0f;
  }
  figure.sections.push_back({"heading", {{"row 0", {{white, "a", {}}, {gradient, "b", {}}}},
                                         {"row 1", {{gradient, "", {}}}}}});
  const auto layout = viz::write_grid_png(dir + "/g.png", figure);
  const auto png = read_image(dir + "/g.png");
  ASSERT_EQ(png.width, layout.width);
  ASSERT_EQ(png.height, layout.height);
  const int x0 = layout.cell_x[0][0][0], y0 = layout.cell_y[0][0][0];
  for (int d = 0; d < 56; d += 5) EXPECT_FLOAT_EQ(png.at(x0 + d, y0 + d), 1.0f);
  // The gradient cell: column x of the image is pixels 2x, 2x+1 of the cell.
  const int x1 = layout.cell_x[0][0][1], y1 = layout.cell_y[0][0][1];
  for (int x = 0; x < 28; x += 3) {
    EXPECT_NEAR(png.at(x1 + 2 * x + 1, y1 + 10), x / 27.0, 0.5 / 255 + 1e-6);
  }
  EXPECT_GT(layout.cell_y[0][1][0], y1 + 56); // the second row sits below the first
  // The title and labels put dark ink on the white page somewhere left of the cells.
  float darkest = 1.0f;
  for (int y = 0; y < y0; ++y) {
    for (int x = 0; x < png.width; ++x) darkest = std::min(darkest, png.at(x, y));
  }
  EXPECT_LT(darkest, 0.3f);
}

TEST(GridFigure, TintedLayersAddUpPerChannel) {
  // Figure 5's cell: one reconstruction in red, the other in green, yellow where both are.
  const auto dir = testing::temp_dir("grid_tint");
  GrayImage left(20, 20), top(20, 20), size(20, 20);
  for (int y = 0; y < 20; ++y) {
    for (int x = 0; x < 20; ++x) {
      left.at(x, y) = x < 10 ? 1.0f : 0.0f;
      top.at(x, y) = y < 10 ? 0.6f : 0.0f;
    }
  }
  viz::GridFigure figure;
  figure.scale = 1;
  viz::Cell cell{size, "overlay", {{left, {1, 0, 0}}, {top, {0, 1, 0}}, {top, {0, 1, 0}}}};
  figure.sections.push_back({"", {{"", {cell}}}});
  const auto layout = viz::write_grid_png(dir + "/t.png", figure);
  int w = 0, h = 0, channels = 0;
  std::unique_ptr<unsigned char, void (*)(void*)> rgb(
      stbi_load((dir + "/t.png").c_str(), &w, &h, &channels, 3), stbi_image_free);
  ASSERT_TRUE(rgb);
  ASSERT_EQ(w, layout.width);
  const int x0 = layout.cell_x[0][0][0], y0 = layout.cell_y[0][0][0];
  auto pixel = [&](int x, int y) {
    const unsigned char* p = rgb.get() + 3 * (size_t(y0 + y) * w + x0 + x);
    return std::array<int, 3>{p[0], p[1], p[2]};
  };
  // Green: two layers of 0.6 clip at 1.
  EXPECT_EQ(pixel(2, 2), (std::array<int, 3>{255, 255, 0}));
  EXPECT_EQ(pixel(15, 2), (std::array<int, 3>{0, 255, 0}));
  EXPECT_EQ(pixel(2, 15), (std::array<int, 3>{255, 0, 0}));
  EXPECT_EQ(pixel(15, 15), (std::array<int, 3>{0, 0, 0}));
  // A layer of another size than the cell is refused.
  figure.sections[0].rows[0].cells[0].layers.push_back({GrayImage(28, 28), {0, 0, 1}});
  EXPECT_THROW(viz::write_grid_png(dir + "/u.png", figure), ImageError);
}

TEST(PlotFigure, WritesAPngOfTheExpectedSize) {
  const auto dir = testing::temp_dir("plot");
  viz::write_plot_png(dir + "/p.png", "curves",
                      {{"Loss", "epoch", "loss", {{"train", {1, 2, 3}, {0.3, 0.2, 0.1}}}},
                       {"Accuracy", "epoch", "%", {{"test", {1, 2, 3}, {97, 98, 99}}}}});
  const auto png = read_image(dir + "/p.png");
  EXPECT_EQ(png.width, 2 * 420 + 24);
  EXPECT_EQ(png.height, 300 + 30 + 24);
}

TEST(PlotFigure, DegenerateDataStillDrawsAndEnds) {
  // Once `plot` looped forever, allocating, on losses equal but for the last bits.
  const auto dir = testing::temp_dir("plot_degenerate");
  const double near = std::nextafter(1e5, 2e5), tiny = std::nextafter(0.3, 1.0);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  const std::vector<viz::Series> cases[] = {
      {{"one row", {1}, {0.5}}},
      {{"equal", {1, 2, 3}, {0.25, 0.25, 0.25}}},
      {{"last bits", {1, 2}, {1e5, near}}, {"other", {1, 2}, {near, 1e5}}},
      {{"last bits small", {1, 2}, {0.3, tiny}}},
      {{"nan and inf", {1, 2, 3, 4}, {0.2, nan, inf, 0.1}}},
      {{"only nan", {1, 2}, {nan, -inf}}},
      {{"huge", {1, 2}, {1e300, -1e300}}, {"epochs huge", {1e300, 2}, {1, 2}}},
      {},
  };
  int k = 0;
  for (const auto& series : cases) {
    const auto path = dir + "/p" + std::to_string(k++) + ".png";
    viz::write_plot_png(path, "degenerate", {{"Loss", "epoch", "loss", series}});
    EXPECT_EQ(read_image(path).width, 420 + 24) << path;
  }
}

TEST(ConfusionFigure, DarkerCellsForLargerFractions) {
  const auto dir = testing::temp_dir("confusion");
  viz::write_confusion_png(dir + "/c.png", "c", {{90, 10}, {0, 100}});
  const auto png = read_image(dir + "/c.png");
  // Cell (0, 0) holds 90% of its row, (0, 1) 10%, (1, 0) nothing: sample near cell corners.
  const int left = 60, top = 70, cell = 44;
  auto shade = [&](int i, int j) { return png.at(left + j * cell + 3, top + i * cell + 3); };
  EXPECT_LT(shade(0, 0), shade(0, 1));
  EXPECT_LT(shade(0, 1), shade(1, 0));
  EXPECT_FLOAT_EQ(shade(1, 0), 1.0f);
}

} // namespace
} // namespace capsnet
