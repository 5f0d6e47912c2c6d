#include "capsnet/engine/adam.h"

#include <ATen/Parallel.h>
#include <c10/util/Exception.h>
#include <torch/optim/serialize.h>

#include <cmath>
#if defined(__SSE__)
#include <xmmintrin.h>
#endif
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>

namespace capsnet {

namespace {

std::vector<torch::optim::OptimizerParamGroup> one_group(std::vector<at::Tensor> params) {
  return {torch::optim::OptimizerParamGroup(std::move(params))};
}

std::string key_of(const at::Tensor& p) { return c10::guts::to_string(p.unsafeGetTensorImpl()); }

// Subnormal floats flushed to zero, as inputs and as results, while it lives
// (x86's MXCSR DAZ and FTZ bits, this thread only). A weight whose gradient
// stays zero (a dead ReLU's) has moments that decay into the subnormal range
// and stay there (0.9 times the smallest subnormal rounds back to it), and
// x86 computes on subnormals through a microcode assist, many times slower
// (measured in docs/efficient-capsnet.md, "Later epochs").
class SubnormalsFlushed {
 public:
#if defined(__SSE__)
  SubnormalsFlushed() : saved_(_mm_getcsr()) { _mm_setcsr(saved_ | kFtz | kDaz); }
  ~SubnormalsFlushed() { _mm_setcsr(saved_); }

 private:
  static constexpr unsigned kFtz = 0x8000, kDaz = 0x0040;
  unsigned saved_;
#endif
};

// torch::optim::Adam's arithmetic, element by element and in its order (mul_
// then add_, addcmul_, sqrt then division by sqrt(bias_correction2) then
// add_(eps), addcdiv_), in one pass over the parameter's memory; subnormal
// moments and results are zero (SubnormalsFlushed). That moves no weight of a
// float's normal range: a subnormal m made a step of at most 1.2e-30 times the
// step size (m / eps), and a subnormal v changed the denominator by less than
// 1e-9 of eps, below its rounding.
void fused_cpu_update(float* p, float* m, float* v, const float* g, int64_t n, float beta1,
                      float one_minus_beta1, float beta2, float one_minus_beta2, float eps,
                      float bias2_sqrt, float minus_step_size) {
  at::parallel_for(0, n, 16384, [&](int64_t begin, int64_t end) {
    [[maybe_unused]] const SubnormalsFlushed flushed;
    for (int64_t i = begin; i < end; ++i) {
      const float gi = g[i];
      const float mi = m[i] * beta1 + one_minus_beta1 * gi;
      const float vi = v[i] * beta2 + one_minus_beta2 * (gi * gi);
      const float denom = std::sqrt(vi) / bias2_sqrt + eps;
      m[i] = mi;
      v[i] = vi;
      p[i] = p[i] + minus_step_size * (mi / denom);
    }
  });
}

} // namespace

Adam::Adam(std::vector<at::Tensor> params, torch::optim::AdamOptions options)
    : torch::optim::Optimizer(one_group(params),
                              std::make_unique<torch::optim::AdamOptions>(options)),
      params_(std::move(params)) {
  TORCH_CHECK(!options.amsgrad() && options.weight_decay() == 0,
              "capsnet::Adam has no amsgrad and no weight decay");
  TORCH_CHECK(!params_.empty(), "capsnet::Adam: no parameters");
  const auto scalar = at::TensorOptions().dtype(at::kDouble).device(params_.front().device());
  step_ = at::zeros({}, scalar);
  lr_ = at::zeros({}, scalar);
  for (const auto& p : params_) {
    exp_avg_.push_back(at::zeros_like(p, at::MemoryFormat::Preserve));
    exp_avg_sq_.push_back(at::zeros_like(p, at::MemoryFormat::Preserve));
  }
}

torch::optim::AdamOptions& Adam::options_() {
  return static_cast<torch::optim::AdamOptions&>(param_groups().front().options());
}

at::Tensor Adam::step(LossClosure closure) {
  TORCH_CHECK(!closure, "capsnet::Adam takes no closure");
  set_lr();
  update();
  return {};
}

void Adam::set_lr() {
  const double lr = options_().lr();
  if (lr == lr_on_device_) return;
  lr_.fill_(lr);
  lr_on_device_ = lr;
}

void Adam::update() {
  at::NoGradGuard no_grad;
  const auto& o = options_();
  const double beta1 = std::get<0>(o.betas()), beta2 = std::get<1>(o.betas());
  step_.add_(1);
  const auto bias1 = 1 - at::pow(beta1, step_);                // 0-dim double
  const auto bias2_sqrt = (1 - at::pow(beta2, step_)).sqrt_(); // 0-dim double
  const auto step_size = lr_ / bias1;
  const bool cpu = step_.device().is_cpu();
  for (size_t k = 0; k < params_.size(); ++k) {
    auto& p = params_[k];
    if (!p.grad().defined()) continue;
    auto g = p.grad();
    auto &m = exp_avg_[k], &v = exp_avg_sq_[k];
    if (cpu && p.scalar_type() == at::kFloat && p.is_contiguous() && g.is_contiguous() &&
        m.is_contiguous() && v.is_contiguous()) {
      // CPU scalars are read in place: no host synchronisation there is one.
      fused_cpu_update(p.data_ptr<float>(), m.data_ptr<float>(), v.data_ptr<float>(),
                       g.data_ptr<float>(), p.numel(), static_cast<float>(beta1),
                       static_cast<float>(1 - beta1), static_cast<float>(beta2),
                       static_cast<float>(1 - beta2), static_cast<float>(o.eps()),
                       static_cast<float>(*bias2_sqrt.data_ptr<double>()),
                       static_cast<float>(-*step_size.data_ptr<double>()));
      continue;
    }
    m.mul_(beta1).add_(g, 1 - beta1);
    v.mul_(beta2).addcmul_(g, g, 1 - beta2);
    const auto denom = (v.sqrt() / bias2_sqrt.to(v.scalar_type())).add_(o.eps());
    p.sub_(m / denom * step_size.to(p.scalar_type()));
  }
}

int64_t Adam::steps_taken() const { return static_cast<int64_t>(step_.item<double>()); }

void Adam::save(torch::serialize::OutputArchive& archive) const {
  // torch::optim::Adam's format: a state per parameter, with its step.
  auto& self = const_cast<Adam&>(*this);
  const int64_t steps = steps_taken();
  self.state().clear();
  if (steps > 0) {
    for (size_t k = 0; k < params_.size(); ++k) {
      auto state = std::make_unique<torch::optim::AdamParamState>();
      state->step(steps);
      state->exp_avg(exp_avg_[k].to(at::kCPU));
      state->exp_avg_sq(exp_avg_sq_[k].to(at::kCPU));
      self.state()[key_of(params_[k])] = std::move(state);
    }
  }
  torch::optim::serialize<torch::optim::AdamParamState, torch::optim::AdamOptions>(archive, *this);
  self.state().clear();
}

void Adam::load(torch::serialize::InputArchive& archive) {
  state().clear();
  torch::optim::serialize<torch::optim::AdamParamState, torch::optim::AdamOptions>(archive, *this);
  int64_t steps = -1;
  for (size_t k = 0; k < params_.size(); ++k) {
    auto found = state().find(key_of(params_[k]));
    if (found == state().end()) { // not stepped yet (torch::optim::Adam makes state lazily)
      exp_avg_[k].zero_();
      exp_avg_sq_[k].zero_();
      if (steps > 0) throw std::runtime_error("the optimizer state covers some parameters only");
      steps = 0;
      continue;
    }
    auto& s = static_cast<torch::optim::AdamParamState&>(*found->second);
    if (steps >= 0 && s.step() != steps) {
      throw std::runtime_error("the optimizer state's step counts differ between parameters (" +
                               std::to_string(steps) + " and " + std::to_string(s.step()) + ")");
    }
    steps = s.step();
    exp_avg_[k].copy_(s.exp_avg());
    exp_avg_sq_[k].copy_(s.exp_avg_sq());
  }
  step_.fill_(static_cast<double>(std::max<int64_t>(steps, 0)));
  state().clear();
}

} // namespace capsnet
