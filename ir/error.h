// Typed errors for everything a user can get wrong. Every layer throws these;
// the frontend adds the block path on the way out of a Block call, so a
// message reads "chimera.0.net.0: matmul: inner dimensions differ ...".
#pragma once

#include <stdexcept>
#include <string>

namespace bj {

/// Base of every error blockjit reports for bad input or misuse.
class Error : public std::exception {
 public:
  /// `op` names the operation (e.g. "matmul", "Dense", "item"); `detail` says what is wrong.
  Error(std::string op, std::string detail) : op_(std::move(op)), detail_(std::move(detail)) { rebuild(); }

  const char* what() const noexcept override { return what_.c_str(); }
  const std::string& op() const { return op_; }
  const std::string& detail() const { return detail_; }
  /// Block path where the error happened ("chimera.0.net.0"), empty if outside any block.
  const std::string& block_path() const { return path_; }
  /// Sets the block path once: the innermost block wins.
  void set_block_path(const std::string& path) {
    if (path_.empty()) {
      path_ = path;
      rebuild();
    }
  }

 private:
  void rebuild() {
    what_ = path_.empty() ? "" : path_ + ": ";
    what_ += op_.empty() ? detail_ : op_ + ": " + detail_;
  }
  std::string op_, detail_, path_, what_;
};

/// Shapes that do not fit together (broadcasting, matmul, concat, reshape, block input width).
class ShapeError : public Error {
  using Error::Error;
};
/// An op applied to a dtype it does not support, or mixed dtypes.
class DTypeError : public Error {
  using Error::Error;
};
/// An index or axis out of range.
class IndexError : public Error {
  using Error::Error;
};
/// A value that is not allowed (item() of a multi-element tensor, unknown activation, ...).
class ValueError : public Error {
  using Error::Error;
};
/// Misuse of autograd: backward without a gradient to start from, a saved
/// tensor changed in place, an in-place change of a leaf that requires grad.
class AutogradError : public Error {
  using Error::Error;
};
/// Text IR that does not parse; the message starts with line:column.
class ParseError : public Error {
  using Error::Error;
};
/// A graph that breaks an IR rule (SSA, arity, attributes, types).
class VerifyError : public Error {
  using Error::Error;
};
/// Code that cannot be traced faithfully.
class TraceError : public Error {
  using Error::Error;
};
/// A file that cannot be read or written as asked: missing, truncated, corrupt, lying about its
/// sizes, or holding what the reader does not expect. The op is the file's path.
class FileError : public Error {
  using Error::Error;
};
/// A call whose data takes a path no compiled graph recorded, where there is no eager code to fall
/// back to (a block imported without its class): the message names each graph's failed guard and
/// where it was recorded.
class GuardError : public Error {
  using Error::Error;
};
/// A block called before its parameters were initialized.
class NotInitializedError : public Error {
  using Error::Error;
};

}  // namespace bj
