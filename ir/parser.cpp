// Parser for the text form written by ir/printer.cpp. A hand-written
// recursive descent over lines; every error says line:column and what was
// expected there.
#include <cctype>
#include <charconv>
#include <optional>
#include <cstring>
#include <unordered_map>

#include "ir/error.h"
#include "ir/graph.h"

namespace bj::ir {

namespace {

bool ident_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-'; }

class Parser {
 public:
  explicit Parser(std::string_view text) : s_(text) {}

  std::unique_ptr<Graph> graph() {
    skip_blank_lines();
    keyword("graph");
    expect('@');
    auto g = std::make_unique<Graph>(ident("a graph name"));
    g_ = g.get();
    expect('(');
    if (!peek(')')) {
      do {
        std::string n = value_name("an input name");
        expect(':');
        Type t = type();
        define(n, g->add_input(n, t));
      } while (accept(','));
    }
    expect(')');
    expect("->");
    expect('(');
    std::vector<Type> out_types;
    if (!peek(')')) {
      do out_types.push_back(type());
      while (accept(','));
    }
    expect(')');
    if (word_ahead("arena")) {
      keyword("arena");
      g->arena_bytes = integer();
    }
    expect('{');
    end_of_line();
    target_ = &g->mutable_nodes();
    bool commits = false;  // commits come last, after every node
    for (;;) {
      skip_blank_lines();
      if (at_end()) fail("a node, 'return' or '}'");
      if (word_ahead("return")) break;
      if (word_ahead("commit")) {
        commits = true;
        commit();
        continue;
      }
      if (commits) fail("'commit' or 'return' (commits follow every node)");
      statement();
    }
    keyword("return");
    if (!at_line_end()) {
      do g->add_output(use());
      while (accept(','));
    }
    end_of_line();
    skip_blank_lines();
    expect('}');
    skip_blank_lines();
    if (!at_end()) fail("the end of the text after '}'");
    if (out_types.size() != g->outputs().size())
      throw ParseError("parse", "the header declares " + std::to_string(out_types.size()) + " results, return gives " +
                                    std::to_string(g->outputs().size()));
    for (size_t i = 0; i < out_types.size(); ++i)
      if (!(out_types[i] == g->outputs()[i]->type))
        throw ParseError("parse", "result " + std::to_string(i) + " is declared " + out_types[i].str() +
                                      " but returns a " + g->outputs()[i]->type.str());
    return g;
  }

 private:
  // ---- statements ----
  /// `commit %target = %value`
  void commit() {
    keyword("commit");
    Value* target = use();
    expect('=');
    Value* value = use();
    g_->add_commit(target, value);
    end_of_line();
  }

  void statement() {
    const Mark at = mark();
    const size_t before = target_->size();
    statement_body();
    if (target_->size() > before) {  // a node was added: remember where its text starts
      target_->back()->line = static_cast<uint32_t>(at.line);
      target_->back()->column = static_cast<uint32_t>(at.col);
    }
  }

  void statement_body() {
    if (word_ahead("param") || word_ahead("const")) {
      bool param = word_ahead("param");
      keyword(param ? "param" : "const");
      std::string n = value_name("a name");
      expect(':');
      Type t = type();
      define(n, param ? g_->add_param(n, t) : g_->add_const(n, t));
      end_of_line();
      return;
    }
    if (word_ahead("guard")) {
      keyword("guard");
      Value* p = use();
      expect("==");
      bool expect_true;
      if (word_ahead("true")) {
        keyword("true");
        expect_true = true;
      } else {
        keyword("false");
        expect_true = false;
      }
      auto n = std::make_unique<Node>();
      n->kind = NodeKind::kGuard;
      n->inputs = {p};
      n->expect = expect_true;
      n->origin = origin();
      target_->push_back(std::move(n));
      return;
    }
    if (word_ahead("fused")) return region();
    Mark name_at = mark();
    std::string n = value_name("a result like %0");
    if (names_.count(n)) fail_at(name_at, "a new name (%" + n + " is already defined)");
    expect(':');
    Type t = type();
    int64_t offset = -1;
    if (accept('@')) offset = integer();
    expect('=');
    if (word_ahead("literal")) {
      keyword("literal");
      std::vector<std::byte> data = literal(t);
      Origin o = origin();
      push(n, g_->make_literal(t, std::move(data), o), offset);
      return;
    }
    Mark op_at = mark();
    std::string op = ident("an op name");
    auto kind = op_by_name(op);
    if (!kind) fail_at(op_at, "an op name (got '" + op + "')");
    expect('(');
    std::vector<Value*> ins;
    if (!peek(')')) {
      do ins.push_back(use());
      while (accept(','));
    }
    expect(')');
    OpAttrs a;
    uint32_t given = 0;
    if (accept('{')) {
      do attr(*kind, a, given);
      while (accept(','));
      expect('}');
    }
    Origin o = origin();
    push(n, g_->make_op(*kind, a, std::move(ins), t, o), offset);
  }

  void push(const std::string& name, std::unique_ptr<Node> node, int64_t offset) {
    node->result->offset = offset;
    define(name, node->result);
    target_->push_back(std::move(node));
  }

  /// fused KIND {  ...op nodes...  } -> (%a, %b)
  void region() {
    if (target_ != &g_->mutable_nodes()) fail("an op node (regions do not nest)");
    keyword("fused");
    auto n = std::make_unique<Node>();
    n->kind = NodeKind::kRegion;
    Mark at = mark();
    const std::string kind = ident("a region kind");
    if (auto k = region_kind_named(kind))
      n->region = *k;
    else
      fail_at(at, "a region kind (elementwise, contraction, reduction, row), got '" + kind + "'");
    expect('{');
    n->origin = origin();
    target_ = &n->body;
    for (;;) {
      skip_blank_lines();
      if (at_end()) fail("a node or '}'");
      if (peek('}')) break;
      statement();
    }
    target_ = &g_->mutable_nodes();
    expect('}');
    expect("->");
    expect('(');
    if (!peek(')')) {
      do n->yields.push_back(use());
      while (accept(','));
    }
    expect(')');
    end_of_line();
    target_->push_back(std::move(n));
  }

  /// One attribute of op `op` (kAttrSpellings): known, read by the op, given once.
  void attr(OpKind op, OpAttrs& a, uint32_t& given) {
    Mark at = mark();
    std::string k = ident("an attribute name");
    const AttrSpelling* spec = nullptr;
    for (const AttrSpelling& s : kAttrSpellings)
      if (s.name == k) spec = &s;
    if (!spec) fail_at(at, "a known attribute (got '" + k + "')");
    const uint32_t reads = op_info(op).attrs;
    if (!(reads & spec->flag)) {
      std::string names;
      for (const AttrSpelling& s : kAttrSpellings)
        if (reads & s.flag) names += (names.empty() ? "" : ", ") + std::string(s.name);
      fail_at(at, "an attribute " + std::string(op_name(op)) + " reads (" + (names.empty() ? "none" : names) +
                      "), got '" + k + "'");
    }
    if (given & spec->flag) fail_at(at, "each attribute once ('" + k + "' is given twice)");
    given |= spec->flag;
    if (!is_flag_attr(spec->flag)) expect('=');
    switch (spec->flag) {
      case kAxes: case kPerm: case kShape: a.dims = dims(); break;
      case kAxis: a.axis = integer(); break;
      case kStart: a.start = integer(); break;
      case kEnd: a.end = integer(); break;
      case kStep: a.step = integer(); break;
      case kScalar: a.scalar = real(); break;
      case kDType: a.dtype = dtype(); break;
      case kKeepdim: a.keepdim = true; break;
      case kTransposeA: a.transpose_a = true; break;
      case kTransposeB: a.transpose_b = true; break;
      case kKernel: a.kernel = dims(); break;
      case kStride: a.stride = dims(); break;
      case kPadding: a.padding = dims(); break;
      case kDilation: a.dilation = dims(); break;
      case kGroups: a.groups = integer(); break;
      case kNoAttrs: break;
    }
  }

  /// A literal's data, as hex bytes or as values; memory is taken only once the text has shown
  /// it holds that much data (a 300-byte file cannot make the parser allocate gigabytes).
  std::vector<std::byte> literal(const Type& t) {
    const size_t es = element_size(t.dtype), count = static_cast<size_t>(t.numel());
    Mark hex_at = mark();
    if (s_.substr(pos_, 2) == "0x") {
      advance(2);
      size_t start = pos_;
      while (!at_end() && std::isxdigit(static_cast<unsigned char>(s_[pos_]))) advance(1);
      std::string_view hex = s_.substr(start, pos_ - start);
      if (hex.size() / 2 != count * es || hex.size() % 2)
        fail_at(hex_at, "hex data of " + std::to_string(count * es) + " bytes for " + t.str());
      std::vector<std::byte> data(count * es);
      auto nibble = [](char c) { return std::isdigit(static_cast<unsigned char>(c)) ? c - '0' : std::tolower(c) - 'a' + 10; };
      for (size_t i = 0; i < data.size(); ++i)
        data[i] = static_cast<std::byte>(nibble(hex[2 * i]) * 16 + nibble(hex[2 * i + 1]));
      return data;
    }
    std::vector<std::byte> data;
    size_t n = 0;
    auto element = [&] {
      if (n == count) fail_at(hex_at, std::to_string(count) + " value(s) for " + t.str());
      data.resize(data.size() + es);
      literal_element(t.dtype, data.data() + es * n++);
    };
    if (accept('[')) {
      if (!peek(']')) {
        do element();
        while (accept(','));
      }
      expect(']');
    } else {
      element();
    }
    if (n != count || (t.shape.empty() && count != 1)) fail_at(hex_at, std::to_string(count) + " value(s) for " + t.str());
    return data;
  }

  /// One element of dtype t into p: f32 from any number (rounded to nearest), bf16 likewise (the
  /// f32 value rounded to 8 bits of mantissa), i64 only from a whole number in range, bool from
  /// true or false. Anything else is an error at its line and column.
  void literal_element(DType t, std::byte* p) {
    Mark at = mark();
    switch (t) {
      case DType::kBool: {
        uint8_t b = word_ahead("true");
        b ? keyword("true") : keyword("false");
        std::memcpy(p, &b, 1);
        return;
      }
      case DType::kI64: {
        size_t start = pos_;
        int64_t v = 0;
        auto [end, ec] = std::from_chars(s_.data() + pos_, s_.data() + s_.size(), v);
        if (ec == std::errc::result_out_of_range) fail_at(at, "an i64 value (from -2^63 to 2^63-1)");
        if (ec != std::errc() || (end < s_.data() + s_.size() && (std::isalnum(static_cast<unsigned char>(*end)) || *end == '.'))) {
          pos_ = start;
          fail_at(at, "a whole number for an i64 literal");
        }
        advance(end - (s_.data() + pos_));
        std::memcpy(p, &v, 8);
        return;
      }
      case DType::kF32: {
        const float f = static_cast<float>(real());
        std::memcpy(p, &f, 4);
        return;
      }
      case DType::kBF16: {
        const float f = static_cast<float>(real());
        uint32_t bits;
        std::memcpy(&bits, &f, 4);
        const uint16_t h = (bits & 0x7fffffff) > 0x7f800000 ? static_cast<uint16_t>((bits >> 16) | 0x40)  // NaN stays NaN
                                                            : static_cast<uint16_t>((bits + 0x7fff + ((bits >> 16) & 1)) >> 16);
        std::memcpy(p, &h, 2);
        return;
      }
    }
  }

  Origin origin() {
    Origin o;
    skip_spaces();
    if (accept_raw('#')) {
      skip_spaces();
      size_t start = pos_;
      while (!at_line_end()) advance(1);
      std::string c(s_.substr(start, pos_ - start));
      while (!c.empty() && c.back() == ' ') c.pop_back();
      // "path (file:line)", "path" or "(file:line)"
      size_t open = c.rfind('(');
      if (open != std::string::npos && c.back() == ')') {
        std::string loc = c.substr(open + 1, c.size() - open - 2);
        size_t colon = loc.rfind(':');
        if (colon != std::string::npos) {
          o.file = loc.substr(0, colon);
          o.line = std::atoi(loc.c_str() + colon + 1);
          c = c.substr(0, open);
          while (!c.empty() && c.back() == ' ') c.pop_back();
        }
      }
      o.path = c;
    }
    end_of_line();
    return o;
  }

  // ---- values and types ----
  void define(const std::string& n, Value* v) {
    if (!names_.emplace(n, v).second) fail("a new name (%" + n + " is already defined)");
  }

  Value* use() {
    Mark at = mark();
    std::string n = value_name("a value like %0");
    auto it = names_.find(n);
    if (it == names_.end()) fail_at(at, "a defined value (%" + n + " is not defined above)");
    return it->second;
  }

  std::string value_name(const char* what) {
    skip_spaces();
    if (!accept_raw('%')) fail(what);
    return ident_raw(what);
  }

  Type type() {
    Type t;
    t.dtype = dtype();
    Mark at = mark();
    expect('[');
    if (!peek(']')) {
      do t.shape.push_back(integer());
      while (accept(','));
    }
    expect(']');
    try {
      check_shape("type", t.shape);
    } catch (const ShapeError& e) {
      fail_at(at, "a shape with sizes from 0 up and at most 2^59 elements (" + e.detail() + ")");
    }
    return t;
  }

  Shape dims() {
    Shape s;
    expect('[');
    if (!peek(']')) {
      do s.push_back(integer());
      while (accept(','));
    }
    expect(']');
    return s;
  }

  DType dtype() {
    Mark at = mark();
    std::string n = ident("a dtype");
    for (DType t : {DType::kF32, DType::kI64, DType::kBool, DType::kBF16})
      if (n == dtype_name(t)) return t;
    fail_at(at, "a dtype (f32, i64, bool, bf16), got '" + n + "'");
  }

  static std::optional<OpKind> op_by_name(const std::string& n) {
    for (int k = 0; k < kNumOps; ++k)
      if (op_name(static_cast<OpKind>(k)) == n) return static_cast<OpKind>(k);
    return std::nullopt;
  }

  // ---- lexing ----
  /// Where a token starts, for messages about it.
  struct Mark {
    size_t pos, line, col;
  };
  /// Skips spaces and marks the next token.
  Mark mark() {
    skip_spaces();
    return {pos_, line_, col_};
  }

  int64_t integer() {
    skip_spaces();
    int64_t v = 0;
    auto [p, ec] = std::from_chars(s_.data() + pos_, s_.data() + s_.size(), v);
    if (ec != std::errc()) fail("an integer");
    advance(p - (s_.data() + pos_));
    return v;
  }

  double real() {
    skip_spaces();
    size_t start = pos_;
    while (!at_end() && (std::isalnum(static_cast<unsigned char>(s_[pos_])) || std::strchr("+-.", s_[pos_])))
      advance(1);
    std::string tok(s_.substr(start, pos_ - start));
    char* end = nullptr;
    double v = std::strtod(tok.c_str(), &end);
    if (tok.empty() || end != tok.c_str() + tok.size()) {
      pos_ = start;
      fail("a number");
    }
    return v;
  }

  std::string ident(const char* what) {
    skip_spaces();
    return ident_raw(what);
  }
  std::string ident_raw(const char* what) {
    size_t start = pos_;
    while (!at_end() && ident_char(s_[pos_])) advance(1);
    if (start == pos_) fail(what);
    return std::string(s_.substr(start, pos_ - start));
  }

  void keyword(std::string_view k) {
    skip_spaces();
    if (!word_ahead(k)) fail("'" + std::string(k) + "'");
    advance(k.size());
  }
  bool word_ahead(std::string_view k) {
    skip_spaces();
    return s_.substr(pos_, k.size()) == k && (pos_ + k.size() >= s_.size() || !ident_char(s_[pos_ + k.size()]));
  }
  void expect(char c) {
    if (!accept(c)) fail(std::string("'") + c + "'");
  }
  void expect(std::string_view tok) {
    skip_spaces();
    if (s_.substr(pos_, tok.size()) != tok) fail("'" + std::string(tok) + "'");
    advance(tok.size());
  }
  bool accept(char c) {
    skip_spaces();
    return accept_raw(c);
  }
  bool accept_raw(char c) {
    if (at_end() || s_[pos_] != c) return false;
    advance(1);
    return true;
  }
  bool peek(char c) {
    skip_spaces();
    return !at_end() && s_[pos_] == c;
  }
  void skip_spaces() {
    while (!at_end() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\r')) advance(1);
  }
  bool at_line_end() {
    skip_spaces();
    return at_end() || s_[pos_] == '\n' || s_[pos_] == '#';
  }
  void end_of_line() {
    skip_spaces();
    if (!at_end() && s_[pos_] == '#') {  // a comment where no origin is read
      while (!at_end() && s_[pos_] != '\n') advance(1);
    }
    if (at_end()) return;
    if (s_[pos_] != '\n') fail("the end of the line");
    advance(1);
  }
  void skip_blank_lines() {
    for (;;) {
      size_t save = pos_, l = line_, c = col_;
      skip_spaces();
      if (!at_end() && s_[pos_] == '\n') {
        advance(1);
        continue;
      }
      pos_ = save, line_ = l, col_ = c;
      return;
    }
  }
  bool at_end() const { return pos_ >= s_.size(); }
  void advance(size_t n) {
    for (size_t i = 0; i < n && pos_ < s_.size(); ++i, ++pos_) {
      if (s_[pos_] == '\n') {
        ++line_;
        col_ = 1;
      } else {
        ++col_;
      }
    }
  }

  [[noreturn]] void fail(const std::string& expected) { fail_at({pos_, line_, col_}, expected); }
  [[noreturn]] void fail_at(Mark at, const std::string& expected) {
    std::string got;
    if (at.pos >= s_.size())
      got = "the end of the text";
    else if (s_[at.pos] == '\n')
      got = "the end of the line";
    else
      got = "'" + std::string(s_.substr(at.pos, std::min<size_t>(12, s_.find('\n', at.pos) - at.pos))) + "'";
    throw ParseError(std::to_string(at.line) + ":" + std::to_string(at.col), "expected " + expected + ", found " + got);
  }

  std::string_view s_;
  size_t pos_ = 0, line_ = 1, col_ = 1;
  Graph* g_ = nullptr;
  std::vector<std::unique_ptr<Node>>* target_ = nullptr;  // where statements go: the graph or a region body
  std::unordered_map<std::string, Value*> names_;
};

}  // namespace

std::unique_ptr<Graph> parse(std::string_view text) { return Parser(text).graph(); }

}  // namespace bj::ir
