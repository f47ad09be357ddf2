#include "activation_patterns.hpp"

#include <cmath>

namespace basin::onnx_import_detail {
namespace {

constexpr double kRelTol = 1e-6;

bool near(double a, double b) { return std::fabs(a - b) <= kRelTol * std::fabs(b); }

bool is_op(const Expr* e, const char* op, size_t arity) {
  return e->kind == Expr::Kind::kOp && e->op == op && e->args.size() == arity;
}

// e = coef · x^x_count · Π others
struct Product {
  int x_count = 0;
  double coef = 1;
  std::vector<const Expr*> others;
};

void flatten_product(const Expr* e, Product* p) {
  if (e->kind == Expr::Kind::kInput) {
    ++p->x_count;
  } else if (e->kind == Expr::Kind::kConst) {
    p->coef *= e->value;
  } else if (is_op(e, "Mul", 2)) {
    flatten_product(e->args[0], p);
    flatten_product(e->args[1], p);
  } else if (is_op(e, "Div", 2) && e->args[1]->kind == Expr::Kind::kConst && e->args[1]->value != 0) {
    flatten_product(e->args[0], p);
    p->coef /= e->args[1]->value;
  } else {
    p->others.push_back(e);
  }
}

// e = constant + Σ terms
struct Sum {
  double constant = 0;
  std::vector<const Expr*> terms;
};

void flatten_sum(const Expr* e, Sum* s) {
  if (e->kind == Expr::Kind::kConst) {
    s->constant += e->value;
  } else if (is_op(e, "Add", 2)) {
    flatten_sum(e->args[0], s);
    flatten_sum(e->args[1], s);
  } else if (is_op(e, "Sub", 2) && e->args[1]->kind == Expr::Kind::kConst) {
    flatten_sum(e->args[0], s);
    s->constant -= e->args[1]->value;
  } else {
    s->terms.push_back(e);
  }
}

// y == x / √2 (as x · c or x / c)?
bool is_x_over_sqrt2(const Expr* y) {
  Product p;
  flatten_product(y, &p);
  return p.x_count == 1 && p.others.empty() && near(p.coef, 1.0 / std::sqrt(2.0));
}

bool is_gelu(const Product& p) {
  if (p.x_count != 1 || p.others.size() != 1 || !near(p.coef, 0.5)) return false;
  Sum s;
  flatten_sum(p.others[0], &s);
  return near(s.constant, 1.0) && s.terms.size() == 1 && is_op(s.terms[0], "Erf", 1) &&
         is_x_over_sqrt2(s.terms[0]->args[0]);
}

bool is_silu(const Product& p) {
  return p.x_count == 1 && p.others.size() == 1 && near(p.coef, 1.0) && is_op(p.others[0], "Sigmoid", 1) &&
         p.others[0]->args[0]->kind == Expr::Kind::kInput;
}

// Counts the nodes of the expression seen as a tree, stopping at `budget`. The expression is a
// DAG (x is shared), and a hostile file can make its tree exponentially large (Mul(a, a) chains).
bool tree_smaller_than(const Expr* e, int* budget) {
  if (--*budget < 0) return false;
  for (const Expr* a : e->args) {
    if (!tree_smaller_than(a, budget)) return false;
  }
  return true;
}

}  // namespace

bool match_activation(const Expr& e, Activation* out) {
  int budget = 64;  // the largest pattern has 11 nodes
  if (!tree_smaller_than(&e, &budget)) return false;
  Product p;
  flatten_product(&e, &p);
  if (is_gelu(p)) {
    *out = Activation::kGelu;
    return true;
  }
  if (is_silu(p)) {
    *out = Activation::kSilu;
    return true;
  }
  return false;
}

}  // namespace basin::onnx_import_detail
