// A small FileCheck for pass tests (after LLVM's FileCheck, on a subset):
//   CHECK: text        a later line contains `text`
//   CHECK-NEXT: text   the line right after the previous match contains it
//   CHECK-LABEL: text  as CHECK (by convention, the graph's header line)
//   CHECK-NOT: text    no line between the previous match and the next one
//                      (or the end) contains it
// Patterns are literal text, compared after trimming spaces at both ends.
#pragma once

#include <sstream>
#include <string>
#include <vector>

namespace bj::test {

inline std::string trim(const std::string& s) {
  const size_t a = s.find_first_not_of(" \t"), b = s.find_last_not_of(" \t");
  return a == std::string::npos ? "" : s.substr(a, b - a + 1);
}

/// Checks `output` against the directives (each "CHECK...: pattern"); empty if they all hold,
/// else what failed, with the output's line numbers.
inline std::string filecheck(const std::string& output, const std::vector<std::string>& directives) {
  std::vector<std::string> lines;
  std::istringstream in(output);
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  size_t next = 0;        // the first line a CHECK may match
  long last = -1;         // the line of the previous match
  std::vector<std::string> nots;
  auto absent = [&](size_t from, size_t to) -> std::string {  // pending CHECK-NOTs over [from, to)
    for (const std::string& p : nots)
      for (size_t i = from; i < to && i < lines.size(); ++i)
        if (lines[i].find(p) != std::string::npos)
          return "CHECK-NOT: '" + p + "' found on output line " + std::to_string(i + 1) + ": " + lines[i];
    nots.clear();
    return "";
  };
  for (const std::string& d : directives) {
    const size_t colon = d.find(':');
    const std::string kind = trim(d.substr(0, colon)), pattern = trim(d.substr(colon + 1));
    if (kind == "CHECK-NOT") {
      nots.push_back(pattern);
      continue;
    }
    size_t at = lines.size();
    if (kind == "CHECK-NEXT") {
      if (last + 1 < static_cast<long>(lines.size()) && lines[last + 1].find(pattern) != std::string::npos)
        at = static_cast<size_t>(last + 1);
    } else if (kind == "CHECK" || kind == "CHECK-LABEL") {
      for (size_t i = next; i < lines.size() && at == lines.size(); ++i)
        if (lines[i].find(pattern) != std::string::npos) at = i;
    } else {
      return "unknown directive '" + d + "'";
    }
    if (at == lines.size())
      return kind + ": '" + pattern + "' not found after output line " + std::to_string(last + 1);
    if (std::string e = absent(next, at); !e.empty()) return e;
    last = static_cast<long>(at);
    next = at + 1;
  }
  return absent(next, lines.size());
}

}  // namespace bj::test
