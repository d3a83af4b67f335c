// One zoneout-LSTM layer's recurrence on CPU: the per-step GEMM (oneDNN through torch's
// mkldnn::_linear_pointwise when the tensors are float32, at::mm otherwise) and ONE pass over
// memory for all of a step's pointwise work, forward and backward. Built at first use by
// trials/zoneout/_cpu_ext.py; trials/zoneout/_lstm_fused.py is the pure-PyTorch oracle.
//
// Gate layout is torch's: (i, f, g, o) blocks of H along the last dimension.
// Zoneout of c (likewise h) is given either as a (T, B, H) bool mask (true = keep the previous
// value) or, when no mask is given, as a constant rate (0 = none; evaluation uses the rate).
// Recurrent dropout: a (T, B, H) bool keep mask and its scale 1/(1-p), applied to g.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <optional>

namespace {

// ---- activations ----------------------------------------------------------------------------
// float: a Cephes-style exp (about 1 ulp) written so that GCC vectorizes the loops that call it
// (no library calls, ternaries instead of fmin/floor; built with -fno-trapping-math so they
// if-convert); double (tests, gradcheck): the C library.

inline float exp_approx(float x) {
  x = x < -87.3f ? -87.3f : x;
  x = x > 88.3f ? 88.3f : x;
  const float scaled = x * 1.44269504088896341f;
  // Round to nearest through int32 (safe: x is clamped).
  const int32_t ni = static_cast<int32_t>(scaled + (scaled >= 0.0f ? 0.5f : -0.5f));
  const float n = static_cast<float>(ni);
  float r = x - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = (ni + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

inline float sigmoid_of(float x) { return 1.0f / (1.0f + exp_approx(-x)); }
inline float tanh_of(float x) { return 1.0f - 2.0f / (exp_approx(2.0f * x) + 1.0f); }
inline double sigmoid_of(double x) { return 1.0 / (1.0 + std::exp(-x)); }
inline double tanh_of(double x) { return std::tanh(x); }

// torch.lerp's formula, so constant-rate zoneout matches the pure-PyTorch path.
template <typename T>
inline T lerp_to(T start, T end, T weight) {
  const T diff = end - start;
  return weight < T(0.5) ? start + weight * diff : end - diff * (T(1) - weight);
}

// ---- zoneout / dropout arguments ------------------------------------------------------------

// Bool masks are read as bytes: GCC vectorizes selects on uint8_t loads, not on bool ones.
using Mask = uint8_t;

struct Zone {
  const Mask* mask = nullptr;  // (T, B, H), or null: constant rate
  double rate = 0.0;
  bool active() const { return mask != nullptr || rate != 0.0; }
};

Zone make_zone(const std::optional<at::Tensor>& mask, double rate, at::IntArrayRef shape) {
  Zone z;
  if (mask.has_value() && mask->defined()) {
    TORCH_CHECK(mask->scalar_type() == at::kBool && mask->is_contiguous(),
                "zoneout masks must be contiguous bool tensors");
    TORCH_CHECK(mask->sizes() == shape, "mask shape ", mask->sizes(), " != ", shape);
    z.mask = reinterpret_cast<const Mask*>(mask->data_ptr<bool>());
  } else {
    z.rate = rate;
  }
  return z;
}

const Mask* keep_mask(const std::optional<at::Tensor>& keep, at::IntArrayRef shape) {
  if (!keep.has_value() || !keep->defined()) return nullptr;
  TORCH_CHECK(keep->scalar_type() == at::kBool && keep->is_contiguous(),
              "the recurrent-dropout mask must be a contiguous bool tensor");
  TORCH_CHECK(keep->sizes() == shape, "keep mask shape ", keep->sizes(), " != ", shape);
  return reinterpret_cast<const Mask*>(keep->data_ptr<bool>());
}

// ---- the recurrent GEMM ---------------------------------------------------------------------

const c10::OperatorHandle* find_op(const char* name) {
  auto op = c10::Dispatcher::singleton().findSchema({name, ""});
  return op.has_value() ? new c10::OperatorHandle(*op) : nullptr;
}

const c10::OperatorHandle* linear_op() {
  static const c10::OperatorHandle* op = find_op("mkldnn::_linear_pointwise");
  return op;
}

const c10::OperatorHandle* reorder_op() {
  static const c10::OperatorHandle* op = find_op("mkldnn::_reorder_linear_weight");
  return op;
}

// y = a @ weight^T for a (rows, in) and weight (out, in), like F.linear without bias.
class Linear {
 public:
  Linear(const at::Tensor& weight, int64_t rows) {
    if (weight.scalar_type() == at::kFloat && linear_op() != nullptr &&
        reorder_op() != nullptr) {
      torch::jit::Stack stack{weight.contiguous(), c10::IValue(rows)};
      reorder_op()->callBoxed(&stack);
      packed_ = stack[0].toTensor();
    } else {
      weight_t_ = weight.t().contiguous();
    }
  }

  at::Tensor operator()(const at::Tensor& a) const {
    if (!packed_.defined()) return at::mm(a, weight_t_);
    torch::jit::Stack stack{a, packed_, c10::IValue(), c10::IValue("none"),
                            c10::IValue(c10::List<std::optional<at::Scalar>>()),
                            c10::IValue("")};
    linear_op()->callBoxed(&stack);
    return stack[0].toTensor();
  }

 private:
  at::Tensor packed_;
  at::Tensor weight_t_;
};

// Rows per parallel chunk: enough work per thread to beat the fork/join cost.
int64_t grain_rows(int64_t hidden) { return std::max<int64_t>(1, 16384 / (4 * hidden)); }

// ---- forward --------------------------------------------------------------------------------

template <typename T>
void forward_step(int64_t t, int64_t batch, int64_t hidden, const T* hw, T* gates,
                  const T* c_prev, const T* h_prev, T* c_new, T* h_new, T* tanh_c,
                  const Zone& zc, const Zone& zh, const Mask* keep, T rd_scale) {
  const int64_t H = hidden, G = 4 * hidden;
  at::parallel_for(0, batch, grain_rows(H), [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      T* __restrict a = gates + b * G;
      const T* r = hw + b * G;
      for (int64_t j = 0; j < 2 * H; ++j) a[j] = sigmoid_of(a[j] + r[j]);  // i, f
      for (int64_t j = 2 * H; j < 3 * H; ++j) a[j] = tanh_of(a[j] + r[j]);  // g
      for (int64_t j = 3 * H; j < G; ++j) a[j] = sigmoid_of(a[j] + r[j]);  // o
      const T* i = a;
      const T* f = a + H;
      const T* g = a + 2 * H;
      const T* o = a + 3 * H;
      const int64_t off = b * H;                 // row b of a (B, H) state
      const int64_t moff = (t * batch + b) * H;  // row (t, b) of a (T, B, H) mask
      const T* __restrict cp = c_prev + off;
      const T* __restrict hp = h_prev + off;
      T* __restrict cn = c_new + off;
      T* __restrict hn = h_new + off;
      T* __restrict tc = tanh_c + off;
      if (keep != nullptr) {
        const Mask* k = keep + moff;
        for (int64_t j = 0; j < H; ++j) cn[j] = f[j] * cp[j] + i[j] * (g[j] * (T(k[j]) * rd_scale));
      } else {
        for (int64_t j = 0; j < H; ++j) cn[j] = f[j] * cp[j] + i[j] * g[j];
      }
      for (int64_t j = 0; j < H; ++j) {
        tc[j] = tanh_of(cn[j]);
        hn[j] = o[j] * tc[j];
      }
      // Zone out c~ and h~ in place (c~ itself is not needed later, only tanh(c~)).
      if (zc.mask != nullptr) {
        const Mask* m = zc.mask + moff;
        for (int64_t j = 0; j < H; ++j) cn[j] = m[j] != 0 ? cp[j] : cn[j];
      } else if (zc.rate != 0.0) {
        const T w = static_cast<T>(zc.rate);
        for (int64_t j = 0; j < H; ++j) cn[j] = lerp_to(cn[j], cp[j], w);
      }
      if (zh.mask != nullptr) {
        const Mask* m = zh.mask + moff;
        for (int64_t j = 0; j < H; ++j) hn[j] = m[j] != 0 ? hp[j] : hn[j];
      } else if (zh.rate != 0.0) {
        const T w = static_cast<T>(zh.rate);
        for (int64_t j = 0; j < H; ++j) hn[j] = lerp_to(hn[j], hp[j], w);
      }
    }
  });
}

// gates: (T, B, 4H) holding x W_ih^T + b on entry and the activations (i, f, g, o) on exit.
// Returns (hs, cs, tanh_c): hs[t + 1] = h_t, cs[t + 1] = c_t, hs[0] = h0, cs[0] = c0.
std::tuple<at::Tensor, at::Tensor, at::Tensor> lstm_forward(
    at::Tensor gates, const at::Tensor& h0, const at::Tensor& c0, const at::Tensor& w_hh,
    const std::optional<at::Tensor>& mask_c, double rate_c,
    const std::optional<at::Tensor>& mask_h, double rate_h,
    const std::optional<at::Tensor>& keep, double rd_scale) {
  TORCH_CHECK(gates.dim() == 3 && gates.is_contiguous(), "gates must be a contiguous (T, B, 4H)");
  const int64_t steps = gates.size(0), batch = gates.size(1), hidden = w_hh.size(1);
  TORCH_CHECK(gates.size(2) == 4 * hidden, "gates must have 4H columns");
  auto hs = at::empty({steps + 1, batch, hidden}, gates.options());
  auto cs = at::empty_like(hs);
  auto tanh_c = at::empty({steps, batch, hidden}, gates.options());
  hs[0].copy_(h0);
  cs[0].copy_(c0);
  const std::array<int64_t, 3> shape{steps, batch, hidden};
  const Zone zc = make_zone(mask_c, rate_c, shape);
  const Zone zh = make_zone(mask_h, rate_h, shape);
  const Mask* kp = keep_mask(keep, shape);
  const Linear recurrent(w_hh, batch);
  AT_DISPATCH_FLOATING_TYPES(gates.scalar_type(), "zoneout_lstm_forward", [&] {
    const int64_t bh = batch * hidden;
    scalar_t* g = gates.data_ptr<scalar_t>();
    scalar_t* h = hs.data_ptr<scalar_t>();
    scalar_t* c = cs.data_ptr<scalar_t>();
    scalar_t* tc = tanh_c.data_ptr<scalar_t>();
    for (int64_t t = 0; t < steps; ++t) {
      const at::Tensor hw = recurrent(hs[t]).contiguous();
      forward_step<scalar_t>(t, batch, hidden, hw.data_ptr<scalar_t>(), g + t * 4 * bh,
                             c + t * bh, h + t * bh, c + (t + 1) * bh, h + (t + 1) * bh,
                             tc + t * bh, zc, zh, kp, static_cast<scalar_t>(rd_scale));
    }
  });
  return {hs, cs, tanh_c};
}

// ---- backward -------------------------------------------------------------------------------

// One row (example) of one backward step. Restrict-qualified parameters (not locals): that is
// what lets GCC prove the arrays distinct and vectorize the loop.
template <typename T, bool kMaskH, bool kMaskC, bool kKeep>
void backward_row(int64_t H, const T* __restrict i, const T* __restrict f,
                  const T* __restrict g, const T* __restrict o, T* __restrict di,
                  T* __restrict df, T* __restrict dg, T* __restrict d_o,
                  const T* __restrict tc, const T* __restrict cp, const T* __restrict go,
                  const T* __restrict gm, T* __restrict cr, T* __restrict fcb,
                  const Mask* __restrict mh, const Mask* __restrict mc,
                  const Mask* __restrict k, T rh, T rc, T rd_scale) {
  for (int64_t j = 0; j < H; ++j) {
    // e: everything reaching h_t (the output, h_n, and step t+1 through W_hh and zoneout).
    const T e = cr[j] + go[j] + gm[j];
    T dht, keep_h;
    if constexpr (kMaskH) {
      dht = mh[j] != 0 ? T(0) : e;
      keep_h = mh[j] != 0 ? e : T(0);
    } else {
      dht = e * (T(1) - rh);
      keep_h = e * rh;
    }
    cr[j] = keep_h;
    T dc_zone, dc_keep;  // the parts of dL/dc_t going to c~_t and straight to c_{t-1}
    if constexpr (kMaskC) {
      dc_zone = mc[j] != 0 ? T(0) : fcb[j];
      dc_keep = mc[j] != 0 ? fcb[j] : T(0);
    } else {
      dc_zone = fcb[j] * (T(1) - rc);
      dc_keep = fcb[j] * rc;
    }
    const T dct = dc_zone + dht * o[j] * (T(1) - tc[j] * tc[j]);
    T r = T(1);
    if constexpr (kKeep) r = T(k[j]) * rd_scale;
    d_o[j] = dht * tc[j] * o[j] * (T(1) - o[j]);
    di[j] = dct * (g[j] * r) * i[j] * (T(1) - i[j]);
    df[j] = dct * cp[j] * f[j] * (T(1) - f[j]);
    dg[j] = dct * i[j] * r * (T(1) - g[j] * g[j]);
    fcb[j] = dc_keep + dct * f[j];
  }
}

// One step of the backward recurrence. The mask kinds are template parameters so that each
// variant's inner loop has no branches; a missing mask means a constant rate.
template <typename T, bool kMaskH, bool kMaskC, bool kKeep>
void backward_step(int64_t t, int64_t batch, int64_t hidden, const T* gates, const T* tanh_c,
                   const T* c_prev, const T* grad_out, const T* from_gemm, T* carry, T* fc,
                   T* dgates, const Zone& zc, const Zone& zh, const Mask* keep, T rd_scale) {
  const int64_t H = hidden, G = 4 * hidden;
  const T rh = static_cast<T>(zh.rate), rc = static_cast<T>(zc.rate);
  at::parallel_for(0, batch, grain_rows(H), [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const T* a = gates + b * G;
      T* d = dgates + b * G;
      const int64_t off = b * H;
      const int64_t moff = (t * batch + b) * H;
      backward_row<T, kMaskH, kMaskC, kKeep>(
          H, a, a + H, a + 2 * H, a + 3 * H, d, d + H, d + 2 * H, d + 3 * H, tanh_c + off,
          c_prev + off, grad_out + off, from_gemm + off, carry + off, fc + off,
          kMaskH ? zh.mask + moff : nullptr, kMaskC ? zc.mask + moff : nullptr,
          kKeep ? keep + moff : nullptr, rh, rc, rd_scale);
    }
  });
}

template <typename T, bool kMaskH, bool kMaskC>
auto pick_keep(bool keep) {
  return keep ? &backward_step<T, kMaskH, kMaskC, true> : &backward_step<T, kMaskH, kMaskC, false>;
}

template <typename T>
auto pick_step(bool mask_h, bool mask_c, bool keep) {
  if (mask_h) return mask_c ? pick_keep<T, true, true>(keep) : pick_keep<T, true, false>(keep);
  return mask_c ? pick_keep<T, false, true>(keep) : pick_keep<T, false, false>(keep);
}

// Returns (dgates (T, B, 4H) w.r.t. the pre-activations, grad_h0, grad_c0).
std::tuple<at::Tensor, at::Tensor, at::Tensor> lstm_backward(
    const std::optional<at::Tensor>& grad_out, const std::optional<at::Tensor>& grad_hn,
    const std::optional<at::Tensor>& grad_cn, const at::Tensor& w_hh, const at::Tensor& gates,
    const at::Tensor& cs, const at::Tensor& tanh_c, const std::optional<at::Tensor>& mask_c,
    double rate_c, const std::optional<at::Tensor>& mask_h, double rate_h,
    const std::optional<at::Tensor>& keep, double rd_scale) {
  const int64_t steps = gates.size(0), batch = gates.size(1), hidden = w_hh.size(1);
  const Zone zc = make_zone(mask_c, rate_c, tanh_c.sizes());
  const Zone zh = make_zone(mask_h, rate_h, tanh_c.sizes());
  const Mask* kp = keep_mask(keep, tanh_c.sizes());
  // Missing gradients are zeros: one branch-free loop for every case.
  const at::Tensor gout = grad_out.has_value() && grad_out->defined()
                              ? grad_out->contiguous()
                              : at::zeros(tanh_c.sizes(), gates.options());
  auto carry = at::zeros({batch, hidden}, gates.options());
  if (grad_hn.has_value() && grad_hn->defined()) carry.copy_(*grad_hn);
  auto fc = at::zeros({batch, hidden}, gates.options());
  if (grad_cn.has_value() && grad_cn->defined()) fc.copy_(*grad_cn);
  auto dgates = at::empty_like(gates);
  // dh_{t-1} gets dgates_t @ W_hh: a linear layer whose weight is W_hh^T (H, 4H).
  const Linear back(w_hh.t().contiguous(), batch);
  at::Tensor from_gemm = at::zeros({batch, hidden}, gates.options());  // none after step T-1
  AT_DISPATCH_FLOATING_TYPES(gates.scalar_type(), "zoneout_lstm_backward", [&] {
    const int64_t bh = batch * hidden;
    const auto step = pick_step<scalar_t>(zh.mask != nullptr, zc.mask != nullptr, kp != nullptr);
    for (int64_t t = steps - 1; t >= 0; --t) {
      step(t, batch, hidden, gates.data_ptr<scalar_t>() + t * 4 * bh,
           tanh_c.data_ptr<scalar_t>() + t * bh, cs.data_ptr<scalar_t>() + t * bh,
           gout.data_ptr<scalar_t>() + t * bh, from_gemm.data_ptr<scalar_t>(),
           carry.data_ptr<scalar_t>(), fc.data_ptr<scalar_t>(),
           dgates.data_ptr<scalar_t>() + t * 4 * bh, zc, zh, kp,
           static_cast<scalar_t>(rd_scale));
      from_gemm = back(dgates[t]).contiguous();
    }
  });
  carry.add_(from_gemm);
  return {dgates, carry, fc};
}

// ---- masks ----------------------------------------------------------------------------------
// Element i of a mask is output i+1 of splitmix64 started at ``seed`` (a counter hash, so any
// chunk can be drawn by any thread), true when its top 24 bits fall below rate * 2^24.
// trials/zoneout/_masks.py computes the same bits with torch integer ops (the fallback).

void mask_chunk(uint8_t* __restrict out, int64_t begin, int64_t end, uint64_t seed,
                uint64_t threshold) {
  for (int64_t i = begin; i < end; ++i) {
    uint64_t z = seed + static_cast<uint64_t>(i + 1) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    out[i] = (z >> 40) < threshold ? 1 : 0;
  }
}

at::Tensor bernoulli_mask(int64_t seed, int64_t threshold, at::IntArrayRef shape) {
  TORCH_CHECK(threshold >= 0 && threshold <= (int64_t{1} << 24), "threshold out of range");
  auto out = at::empty(shape, at::TensorOptions().dtype(at::kBool));
  auto* data = reinterpret_cast<uint8_t*>(out.data_ptr<bool>());
  at::parallel_for(0, out.numel(), int64_t{1} << 16, [&](int64_t begin, int64_t end) {
    mask_chunk(data, begin, end, static_cast<uint64_t>(seed), static_cast<uint64_t>(threshold));
  });
  return out;
}

}  // namespace

TORCH_LIBRARY(zoneout_cpu, m) {
  // No tensor arguments, so no backend to dispatch on: one kernel for every call.
  m.def("bernoulli_mask(int seed, int threshold, int[] shape) -> Tensor", &bernoulli_mask);
  m.def(
      "lstm_forward(Tensor(a!) gates, Tensor h0, Tensor c0, Tensor w_hh, Tensor? mask_c, "
      "float rate_c, Tensor? mask_h, float rate_h, Tensor? keep, float rd_scale) "
      "-> (Tensor, Tensor, Tensor)");
  m.def(
      "lstm_backward(Tensor? grad_out, Tensor? grad_hn, Tensor? grad_cn, Tensor w_hh, "
      "Tensor gates, Tensor cs, Tensor tanh_c, Tensor? mask_c, float rate_c, Tensor? mask_h, "
      "float rate_h, Tensor? keep, float rd_scale) -> (Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(zoneout_cpu, CPU, m) {
  m.impl("lstm_forward", &lstm_forward);
  m.impl("lstm_backward", &lstm_backward);
}
