#include "capsnet/viz/figure.h"

#include "capsnet/engine/epoch_record.h"
#include "capsnet/io/atomic_file.h"

#include <cairo.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <memory>

namespace capsnet::viz {

namespace {

constexpr int kMargin = 12;
constexpr double kFontSize = 12;
constexpr const char* kFont = "DejaVu Sans";

struct Canvas {
  std::unique_ptr<cairo_surface_t, void (*)(cairo_surface_t*)> surface;
  std::unique_ptr<cairo_t, void (*)(cairo_t*)> cr;

  Canvas(int width, int height)
      : surface(cairo_image_surface_create(CAIRO_FORMAT_RGB24, width, height),
                cairo_surface_destroy),
        cr(cairo_create(surface.get()), cairo_destroy) {
    cairo_set_source_rgb(cr.get(), 1, 1, 1);
    cairo_paint(cr.get());
    font(kFontSize);
  }

  void font(double size, bool bold = false) {
    cairo_select_font_face(cr.get(), kFont, CAIRO_FONT_SLANT_NORMAL,
                           bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_font_size(cr.get(), size);
  }

  // Text with its baseline at y; align 0 left, 0.5 centre, 1 right.
  void text(const std::string& s, double x, double y, double align = 0, double r = 0,
            double g = 0, double b = 0) {
    cairo_text_extents_t ext;
    cairo_text_extents(cr.get(), s.c_str(), &ext);
    cairo_set_source_rgb(cr.get(), r, g, b);
    cairo_move_to(cr.get(), x - align * ext.x_advance, y);
    cairo_show_text(cr.get(), s.c_str());
  }

  double text_width(const std::string& s) {
    cairo_text_extents_t ext;
    cairo_text_extents(cr.get(), s.c_str(), &ext);
    return ext.x_advance;
  }

  // A cell's image, or the tinted sum of its layers, written straight into
  // the surface, each pixel a scale x scale block.
  void image(const Cell& cell, int x0, int y0, int scale) {
    const GrayImage& img = cell.image;
    for (const auto& layer : cell.layers) {
      if (layer.image.width != img.width || layer.image.height != img.height) {
        throw ImageError("a figure cell's layer is " + std::to_string(layer.image.width) + "x" +
                         std::to_string(layer.image.height) + " but the cell is " +
                         std::to_string(img.width) + "x" + std::to_string(img.height));
      }
    }
    cairo_surface_flush(surface.get());
    unsigned char* data = cairo_image_surface_get_data(surface.get());
    const int stride = cairo_image_surface_get_stride(surface.get());
    const int W = cairo_image_surface_get_width(surface.get());
    const int H = cairo_image_surface_get_height(surface.get());
    for (int y = 0; y < img.height * scale; ++y) {
      for (int x = 0; x < img.width * scale; ++x) {
        const int px = x0 + x, py = y0 + y;
        if (px < 0 || py < 0 || px >= W || py >= H) continue;
        float rgb[3];
        if (cell.layers.empty()) {
          rgb[0] = rgb[1] = rgb[2] = img.at(x / scale, y / scale);
        } else {
          rgb[0] = rgb[1] = rgb[2] = 0;
          for (const auto& layer : cell.layers) {
            const float v = layer.image.at(x / scale, y / scale);
            rgb[0] += v * layer.tint.r;
            rgb[1] += v * layer.tint.g;
            rgb[2] += v * layer.tint.b;
          }
        }
        uint32_t pixel = 0;
        for (float c : rgb) {
          pixel = (pixel << 8) | static_cast<uint32_t>(std::lround(std::clamp(c, 0.0f, 1.0f) * 255));
        }
        reinterpret_cast<uint32_t*>(data + py * stride)[px] = pixel;
      }
    }
    cairo_surface_mark_dirty(surface.get());
  }

  void save(const std::string& path) {
    cairo_surface_flush(surface.get());
    write_file_atomically(path, [&](const std::string& temporary) {
      const auto status = cairo_surface_write_to_png(surface.get(), temporary.c_str());
      if (status != CAIRO_STATUS_SUCCESS) {
        throw ImageError(path + ": cannot write the PNG file: " + cairo_status_to_string(status));
      }
    });
  }
};

std::string format_tick(double value) {
  char buf[32];
  const double mag = std::fabs(value);
  if (mag != 0 && (mag < 1e-3 || mag >= 1e5)) {
    std::snprintf(buf, sizeof buf, "%.1e", value);
  } else {
    std::snprintf(buf, sizeof buf, "%.4g", value);
  }
  return buf;
}

// About five round tick values covering [lo, hi]; whole numbers only when
// `integers` (epochs).
// None when the range is not finite or too narrow for its values' precision
// (the caller widens such ranges first; see widen()). At most kMaxTicks.
std::vector<double> ticks(double lo, double hi, bool integers = false) {
  constexpr double kMaxTicks = 50;
  std::vector<double> out;
  const double span = hi - lo;
  if (!std::isfinite(span) || !(span > 0)) return out;
  const double raw = span / 5;
  const double p = std::pow(10, std::floor(std::log10(raw)));
  double step = p;
  for (double m : {1.0, 2.0, 2.5, 5.0, 10.0}) {
    if (m * p >= raw) {
      step = m * p;
      break;
    }
  }
  if (integers) step = std::max(1.0, std::round(step));
  // Ticks by index, not by accumulating `step`: t += step stalls once step is
  // below the spacing of doubles near t (losses equal but for the last bits).
  const double first = std::ceil(lo / step - 1e-9), last = std::floor(hi / step + 1e-9);
  if (!std::isfinite(first) || !std::isfinite(last) || !(last - first < kMaxTicks)) return out;
  for (double k = first; k <= last; ++k) {
    const double t = k * step;
    out.push_back(std::fabs(t) < 1e-12 * step ? 0.0 : t);
  }
  return out;
}

// [lo, hi] made drawable: a default for no values, and a range wide enough
// for distinct ticks when the values are equal or nearly so.
void widen(double& lo, double& hi, double half_width_at_zero) {
  if (lo > hi) lo = 0, hi = 1;
  const double scale = std::max(std::fabs(lo), std::fabs(hi));
  if (hi - lo <= 1e-9 * scale || hi - lo < 1e-12) {
    const double half = std::max(half_width_at_zero, 0.5 * scale);
    lo -= half, hi += half;
  }
}

const double kColors[][3] = {{0.12, 0.47, 0.71}, {1.0, 0.5, 0.05}, {0.17, 0.63, 0.17},
                             {0.84, 0.15, 0.16}, {0.58, 0.4, 0.74}};

} // namespace

GridLayout write_grid_png(const std::string& path, const GridFigure& figure) {
  const int cell = 28 * figure.scale; // nominal; each cell's own image size is used below
  const int gap = 4, title_h = figure.title.empty() ? 0 : 26, heading_h = 22, caption_h = 15;
  // Measure: label column and the widest row.
  Canvas probe(1, 1);
  double label_w = 0;
  int row_w = 0, height = kMargin + title_h;
  for (const auto& section : figure.sections) {
    if (!section.heading.empty()) height += heading_h;
    for (const auto& row : section.rows) {
      label_w = std::max(label_w, probe.text_width(row.label));
      int w = 0, h = 0;
      bool captions = false;
      for (const auto& c : row.cells) {
        w += c.image.width * figure.scale + gap;
        h = std::max(h, c.image.height * figure.scale);
        captions = captions || !c.caption.empty();
      }
      row_w = std::max(row_w, w);
      height += std::max(h, cell / 2) + (captions ? caption_h : 0) + gap;
    }
    height += gap;
  }
  const int label_col = label_w > 0 ? int(std::ceil(label_w)) + 8 : 0;
  GridLayout layout;
  layout.width = std::max(kMargin * 2 + label_col + row_w,
                          kMargin * 2 + int(probe.text_width(figure.title) * 1.3));
  layout.height = height + kMargin;

  Canvas canvas(layout.width, layout.height);
  int y = kMargin;
  if (!figure.title.empty()) {
    canvas.font(15, true);
    canvas.text(figure.title, kMargin, y + 16);
    canvas.font(kFontSize);
    y += title_h;
  }
  for (const auto& section : figure.sections) {
    layout.cell_x.emplace_back();
    layout.cell_y.emplace_back();
    if (!section.heading.empty()) {
      canvas.font(13, true);
      canvas.text(section.heading, kMargin, y + 15);
      canvas.font(kFontSize);
      y += heading_h;
    }
    for (const auto& row : section.rows) {
      int h = 0;
      bool captions = false;
      for (const auto& c : row.cells) {
        h = std::max(h, c.image.height * figure.scale);
        captions = captions || !c.caption.empty();
      }
      h = std::max(h, cell / 2);
      canvas.text(row.label, kMargin + label_col - 8, y + h / 2.0 + 4, 1.0);
      int x = kMargin + label_col;
      std::vector<int> xs, ys;
      for (const auto& c : row.cells) {
        canvas.image(c, x, y, figure.scale);
        xs.push_back(x);
        ys.push_back(y);
        if (!c.caption.empty()) {
          canvas.font(10);
          canvas.text(c.caption, x + c.image.width * figure.scale / 2.0, y + h + 11, 0.5);
          canvas.font(kFontSize);
        }
        x += c.image.width * figure.scale + gap;
      }
      layout.cell_x.back().push_back(xs);
      layout.cell_y.back().push_back(ys);
      y += h + (captions ? caption_h : 0) + gap;
    }
    y += gap;
  }
  canvas.save(path);
  return layout;
}

namespace {

// Points with a non-finite or huge coordinate are not drawn.
bool drawable(double x, double y) {
  return std::fabs(x) < 1e150 && std::fabs(y) < 1e150; // false for NaN and inf
}

// A panel's axes: where they are on the canvas and the ranges they show.
struct PlotFrame {
  double ox, oy, w, h;
  double x_lo = 1e300, x_hi = -1e300, y_lo = 1e300, y_hi = -1e300;
  bool integer_x = true;
  double px(double v) const { return ox + (v - x_lo) / (x_hi - x_lo) * w; }
  double py(double v) const { return oy + h - (v - y_lo) / (y_hi - y_lo) * h; }
};

PlotFrame frame_of(const Panel& panel, double ox, double oy, double w, double h) {
  PlotFrame f{ox, oy, w, h};
  for (const auto& s : panel.series) {
    for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
      if (!drawable(s.x[i], s.y[i])) continue;
      f.x_lo = std::min(f.x_lo, s.x[i]), f.x_hi = std::max(f.x_hi, s.x[i]);
      f.y_lo = std::min(f.y_lo, s.y[i]), f.y_hi = std::max(f.y_hi, s.y[i]);
      f.integer_x = f.integer_x && s.x[i] == std::round(s.x[i]);
    }
  }
  widen(f.x_lo, f.x_hi, 0.5);
  widen(f.y_lo, f.y_hi, 5e-7);
  const double pad = 0.05 * (f.y_hi - f.y_lo);
  f.y_lo -= pad, f.y_hi += pad;
  return f;
}

// Title, grid, ticks, frame and axis labels.
void draw_axes(Canvas& canvas, const Panel& panel, const PlotFrame& f) {
  auto* cr = canvas.cr.get();
  const double ox = f.ox, oy = f.oy, w = f.w, h = f.h;
  const double x_lo = f.x_lo, x_hi = f.x_hi, y_lo = f.y_lo, y_hi = f.y_hi;
  const bool integer_x = f.integer_x;
  auto px = [&](double v) { return f.px(v); };
  auto py = [&](double v) { return f.py(v); };
  canvas.font(13, true);
  canvas.text(panel.title, ox + w / 2, oy - 10, 0.5);
  canvas.font(10);
  cairo_set_line_width(cr, 1);
  for (double t : ticks(y_lo, y_hi)) {
    cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
    cairo_move_to(cr, ox, py(t));
    cairo_line_to(cr, ox + w, py(t));
    cairo_stroke(cr);
    canvas.text(format_tick(t), ox - 5, py(t) + 3.5, 1.0);
  }
  for (double t : ticks(x_lo, x_hi, integer_x)) {
    cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
    cairo_move_to(cr, px(t), oy);
    cairo_line_to(cr, px(t), oy + h);
    cairo_stroke(cr);
    canvas.text(format_tick(t), px(t), oy + h + 14, 0.5);
  }
  cairo_set_source_rgb(cr, 0, 0, 0);
  cairo_rectangle(cr, ox, oy, w, h);
  cairo_stroke(cr);
  canvas.font(kFontSize);
  canvas.text(panel.x_label, ox + w / 2, oy + h + 32, 0.5);
  cairo_save(cr);
  cairo_move_to(cr, ox - 48, oy + h / 2);
  cairo_rotate(cr, -M_PI / 2);
  cairo_text_extents_t ext;
  cairo_text_extents(cr, panel.y_label.c_str(), &ext);
  cairo_rel_move_to(cr, -ext.x_advance / 2, 0);
  cairo_show_text(cr, panel.y_label.c_str());
  cairo_restore(cr);

}

// The series as lines with dots, and their legend.
void draw_series(Canvas& canvas, const Panel& panel, const PlotFrame& f) {
  auto* cr = canvas.cr.get();
  const double ox = f.ox, oy = f.oy, w = f.w, h = f.h, y_lo = f.y_lo, y_hi = f.y_hi;
  auto px = [&](double v) { return f.px(v); };
  auto py = [&](double v) { return f.py(v); };
  // The legend goes in the top or bottom corner, away from where the series end.
  double end_sum = 0;
  int ends = 0;
  for (const auto& s : panel.series) {
    if (!s.y.empty() && std::isfinite(s.y.back())) end_sum += s.y.back(), ++ends;
  }
  const bool legend_top = ends == 0 || end_sum / ends < (y_lo + y_hi) / 2;
  for (size_t k = 0; k < panel.series.size(); ++k) {
    const auto& s = panel.series[k];
    const auto* c = kColors[k % 5];
    cairo_set_source_rgb(cr, c[0], c[1], c[2]);
    cairo_set_line_width(cr, 2);
    bool pen_down = false; // a gap where a point is not drawn
    for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
      if (!drawable(s.x[i], s.y[i])) {
        pen_down = false;
        continue;
      }
      if (!pen_down) cairo_move_to(cr, px(s.x[i]), py(s.y[i]));
      else cairo_line_to(cr, px(s.x[i]), py(s.y[i]));
      pen_down = true;
    }
    cairo_stroke(cr);
    for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
      if (!drawable(s.x[i], s.y[i])) continue;
      cairo_arc(cr, px(s.x[i]), py(s.y[i]), 3, 0, 2 * M_PI);
      cairo_fill(cr);
    }
    // Legend, top right inside the axes.
    const double ly = legend_top ? oy + 16 + 16 * k
                                 : oy + h - 8 - 16 * (panel.series.size() - 1 - k);
    cairo_move_to(cr, ox + w - 110, ly - 4);
    cairo_line_to(cr, ox + w - 90, ly - 4);
    cairo_stroke(cr);
    canvas.text(s.name, ox + w - 85, ly);
  }
}

} // namespace

void write_plot_png(const std::string& path, const std::string& title,
                    const std::vector<Panel>& panels) {
  const int panel_w = 420, panel_h = 300, title_h = 30;
  const int left = 64, right = 16, top = 28, bottom = 44;
  Canvas canvas(kMargin * 2 + panel_w * int(panels.size()), kMargin * 2 + title_h + panel_h);
  canvas.font(15, true);
  canvas.text(title, kMargin, kMargin + 18);
  canvas.font(kFontSize);
  for (size_t p = 0; p < panels.size(); ++p) {
    const auto frame = frame_of(panels[p], kMargin + p * panel_w + left, kMargin + title_h + top,
                                panel_w - left - right, panel_h - top - bottom);
    draw_axes(canvas, panels[p], frame);
    draw_series(canvas, panels[p], frame);
  }
  canvas.save(path);
}

void write_confusion_png(const std::string& path, const std::string& title,
                         const std::vector<std::vector<int64_t>>& counts) {
  const int n = int(counts.size()), cell = 44, left = 60, top = 70;
  Canvas probe(1, 1);
  probe.font(15, true);
  const int title_w = int(std::ceil(probe.text_width(title))) + kMargin * 2;
  Canvas canvas(std::max(left + n * cell + kMargin * 2, title_w), top + n * cell + kMargin * 2 + 10);
  auto* cr = canvas.cr.get();
  canvas.font(15, true);
  canvas.text(title, kMargin, kMargin + 18);
  canvas.font(kFontSize);
  canvas.text("predicted", left + n * cell / 2.0, top - 24, 0.5);
  for (int j = 0; j < n; ++j) canvas.text(std::to_string(j), left + (j + 0.5) * cell, top - 6, 0.5);
  for (int i = 0; i < n; ++i) {
    int64_t total = 0;
    for (auto v : counts[i]) total += v;
    canvas.text(std::to_string(i), left - 8, top + (i + 0.5) * cell + 4, 1.0);
    for (int j = 0; j < n; ++j) {
      const double f = total ? double(counts[i][j]) / total : 0.0;
      // White to dark blue; a faint floor so that small counts stay visible.
      const double t = counts[i][j] ? 0.08 + 0.92 * std::sqrt(f) : 0.0;
      cairo_set_source_rgb(cr, 1 - 0.85 * t, 1 - 0.6 * t, 1 - 0.3 * t);
      cairo_rectangle(cr, left + j * cell, top + i * cell, cell, cell);
      cairo_fill(cr);
      const double ink = t > 0.5 ? 1.0 : 0.0;
      canvas.font(10);
      canvas.text(std::to_string(counts[i][j]), left + (j + 0.5) * cell, top + (i + 0.5) * cell + 4,
                  0.5, ink, ink, ink);
      canvas.font(kFontSize);
    }
  }
  cairo_save(cr);
  cairo_move_to(cr, kMargin + 12, top + n * cell / 2.0);
  cairo_rotate(cr, -M_PI / 2);
  cairo_set_source_rgb(cr, 0, 0, 0);
  cairo_show_text(cr, "true");
  cairo_restore(cr);
  canvas.save(path);
}

std::vector<Panel> training_curves(std::istream& metrics, const std::string& source) {
  Series train_loss{"train", {}, {}}, test_loss{"test", {}, {}};
  Series train_acc{"train", {}, {}}, test_acc{"test", {}, {}};
  for (const auto& row : read_evaluated_epoch_records(metrics, source)) {
    const double epoch = static_cast<double>(row.epoch);
    train_loss.x.push_back(epoch), train_loss.y.push_back(row.train_loss);
    test_loss.x.push_back(epoch), test_loss.y.push_back(row.test_loss);
    train_acc.x.push_back(epoch), train_acc.y.push_back(100 * row.train_accuracy);
    test_acc.x.push_back(epoch), test_acc.y.push_back(100 * row.test_accuracy);
  }
  if (train_loss.x.empty()) {
    throw std::invalid_argument(source + ": no epochs recorded yet; plot after the first epoch");
  }
  return {{"Loss", "epoch", "loss (margin + reconstruction)", {train_loss, test_loss}},
          {"Accuracy", "epoch", "accuracy (%)", {train_acc, test_acc}}};
}

RunPlot plot_run(const std::string& run_dir, const std::string& out) {
  const auto path = (std::filesystem::path(run_dir) / "metrics.jsonl").string();
  if (!std::filesystem::is_regular_file(path)) {
    throw std::invalid_argument(path + ": not found (or not a file); is " + run_dir +
                                " a run directory?");
  }
  std::ifstream in(path);
  if (!in) throw std::invalid_argument(path + ": cannot be read");
  check_outputs({out}, files_in(run_dir));
  const auto panels = training_curves(in, path);
  write_plot_png(out, "Training curves: " + run_dir, panels);
  const auto& test_accuracy = panels[1].series[1];
  return {test_accuracy.y.size(), test_accuracy.y.back()};
}

} // namespace capsnet::viz
