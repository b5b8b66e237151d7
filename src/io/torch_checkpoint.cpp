// torch.save zip reader: a restricted protocol-2 unpickler for data.pkl (format:
// PyTorch's torch/serialization.py zip layout; opcodes: CPython Lib/pickle.py, PEP 307).
// The zip container is LibTorch's own PyTorchStreamReader. The unpickler is ours: LibTorch's
// torch::pickle_load accepts only TorchScript's types (a released checkpoint pickles Python
// classes, OrderedDicts and module wrappers), and no C or C++ library reads Python pickles.
#include "microdit/io/torch_checkpoint.h"

#include <c10/util/Exception.h>
#include <c10/util/StringUtil.h>
#include <caffe2/serialize/inline_container.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cstring>
#include <fstream>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string_view>
#include <unordered_map>
#include <variant>

#include "microdit/util/error_message.h"

namespace microdit::io {

namespace fs = std::filesystem;
using namespace std::string_view_literals;

namespace {

// ---------------------------------------------------------------------------------------------
// The values a state-dict pickle can build. Containers are shared (memo, nesting), hence Ref.

struct PyObject;
using Ref = std::shared_ptr<PyObject>;

struct None {};
struct Tuple {
  std::vector<Ref> items;
};
struct List {
  std::vector<Ref> items;
};
struct Dict {
  std::vector<std::pair<Ref, Ref>> items;  // insertion order
};
struct Global {
  std::string module, name;
  std::string qualified() const { return module + "." + name; }
};
struct Storage {
  at::Tensor flat;  // 1-D, the storage's dtype (uint8 for an untyped storage)
};

struct PyObject {
  std::variant<None, bool, std::int64_t, double, std::string, Tuple, List, Dict, Global, Storage,
               at::Tensor>
      value;
};

template <class T>
Ref make(T value) {
  return std::make_shared<PyObject>(PyObject{std::move(value)});
}

std::string type_name(const PyObject& object) {
  constexpr std::array<std::string_view, 11> kNames{"None",   "bool",    "int",   "float",
                                                    "str",    "tuple",   "list",  "dict",
                                                    "global", "storage", "tensor"};
  if (const auto* g = std::get_if<Global>(&object.value)) return "global " + g->qualified();
  return std::string(kNames[object.value.index()]);
}

template <class T>
T& expect(const Ref& object, std::string_view expected, std::string_view context) {
  if (auto* value = std::get_if<T>(&object->value)) return *value;
  throw std::runtime_error(
      c10::str(context, ": expected ", expected, ", got ", type_name(*object)));
}

// ---------------------------------------------------------------------------------------------
// Recognised globals

constexpr std::string_view kOrderedDict = "collections.OrderedDict";
constexpr std::string_view kRebuildTensorV2 = "torch._utils._rebuild_tensor_v2";
constexpr std::string_view kRebuildTensorV3 = "torch._utils._rebuild_tensor_v3";
constexpr std::string_view kRebuildParameter = "torch._utils._rebuild_parameter";
constexpr std::string_view kRebuildParameterWithState =
    "torch._utils._rebuild_parameter_with_state";

struct NamedType {
  std::string_view name;
  at::ScalarType type;
};

// torch.<Name>Storage, as torch.save writes typed storages.
constexpr std::array<NamedType, 12> kStorageTypes{{
    {"DoubleStorage", at::kDouble},
    {"FloatStorage", at::kFloat},
    {"HalfStorage", at::kHalf},
    {"BFloat16Storage", at::kBFloat16},
    {"LongStorage", at::kLong},
    {"IntStorage", at::kInt},
    {"ShortStorage", at::kShort},
    {"CharStorage", at::kChar},
    {"ByteStorage", at::kByte},
    {"BoolStorage", at::kBool},
    {"ComplexFloatStorage", at::kComplexFloat},
    {"ComplexDoubleStorage", at::kComplexDouble},
}};

// torch.<dtype>, the dtype argument of _rebuild_tensor_v3 (dtypes without a typed storage).
constexpr std::array<NamedType, 20> kDtypeNames{{
    {"float64", at::kDouble},
    {"float32", at::kFloat},
    {"float16", at::kHalf},
    {"bfloat16", at::kBFloat16},
    {"int64", at::kLong},
    {"int32", at::kInt},
    {"int16", at::kShort},
    {"int8", at::kChar},
    {"uint8", at::kByte},
    {"bool", at::kBool},
    {"uint16", at::kUInt16},
    {"uint32", at::kUInt32},
    {"uint64", at::kUInt64},
    {"complex64", at::kComplexFloat},
    {"complex128", at::kComplexDouble},
    {"float8_e4m3fn", at::kFloat8_e4m3fn},
    {"float8_e5m2", at::kFloat8_e5m2},
    {"float8_e4m3fnuz", at::kFloat8_e4m3fnuz},
    {"float8_e5m2fnuz", at::kFloat8_e5m2fnuz},
    {"float8_e8m0fnu", at::kFloat8_e8m0fnu},
}};

template <std::size_t N>
std::optional<at::ScalarType> lookup(const std::array<NamedType, N>& table, std::string_view name) {
  for (const NamedType& entry : table) {
    if (entry.name == name) return entry.type;
  }
  return std::nullopt;
}

bool is_untyped_storage(const Global& g) {
  return (g.module == "torch.storage" || g.module == "torch") && g.name == "UntypedStorage";
}

// The element type of a storage global, or nullopt when `g` is not one.
std::optional<at::ScalarType> storage_dtype(const Global& g) {
  if (is_untyped_storage(g)) return at::kByte;  // numel then counts bytes
  if (g.module != "torch") return std::nullopt;
  return lookup(kStorageTypes, g.name);
}

std::optional<at::ScalarType> dtype_global(const Global& g) {
  if (g.module != "torch") return std::nullopt;
  return lookup(kDtypeNames, g.name);
}

bool is_allowed_global(const Global& g) {
  const std::string name = g.qualified();
  return name == kOrderedDict || name == kRebuildTensorV2 || name == kRebuildTensorV3 ||
         name == kRebuildParameter || name == kRebuildParameterWithState ||
         storage_dtype(g).has_value() || dtype_global(g).has_value();
}

// ---------------------------------------------------------------------------------------------
// Tensors from storages

std::vector<std::int64_t> int_tuple(const Ref& object, std::string_view what) {
  std::vector<std::int64_t> out;
  for (const Ref& item : expect<Tuple>(object, "a tuple of ints", what).items) {
    out.push_back(expect<std::int64_t>(item, "an int", what));
  }
  return out;
}

// Applies storage_offset/size/stride after checking the view stays inside the storage.
at::Tensor view_of_storage(at::Tensor flat, at::ScalarType dtype, std::int64_t offset,
                           const std::vector<std::int64_t>& size,
                           const std::vector<std::int64_t>& stride) {
  if (flat.scalar_type() != dtype) {
    const std::int64_t element = static_cast<std::int64_t>(c10::elementSize(dtype));
    if (flat.scalar_type() != at::kByte || flat.numel() % element != 0) {
      throw std::runtime_error(
          c10::str("a ", flat.scalar_type(), " storage cannot hold ", dtype, " elements"));
    }
    flat = flat.view(dtype);
  }
  if (size.size() != stride.size() || offset < 0) {
    throw std::runtime_error(c10::str("invalid tensor view: size ", shape_string(size), ", stride ",
                                      shape_string(stride), ", offset ", offset));
  }
  const auto negative = [](std::int64_t v) { return v < 0; };
  if (std::any_of(size.begin(), size.end(), negative) ||
      std::any_of(stride.begin(), stride.end(), negative)) {
    throw std::runtime_error(c10::str("invalid tensor view: size ", shape_string(size), ", stride ",
                                      shape_string(stride)));
  }
  if (std::find(size.begin(), size.end(), 0) != size.end()) return at::empty(size, flat.options());
  std::int64_t last = offset;  // highest element index the view touches
  bool overflow = false;
  for (std::size_t d = 0; d < size.size(); ++d) {
    std::int64_t reach = 0;
    overflow = overflow || __builtin_mul_overflow(size[d] - 1, stride[d], &reach) ||
               __builtin_add_overflow(last, reach, &last);
  }
  if (overflow || last >= flat.numel()) {
    throw std::runtime_error(c10::str("tensor view (offset ", offset, ", size ", shape_string(size),
                                      ", stride ", shape_string(stride), ") reaches past the end of",
                                      " a storage with ", flat.numel(), " elements"));
  }
  return flat.as_strided(size, stride, offset);
}

// _rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata])
// _rebuild_tensor_v3(storage, offset, size, stride, requires_grad, hooks, dtype[, metadata])
at::Tensor rebuild_tensor(const Tuple& args, bool v3) {
  const std::string_view what = v3 ? "_rebuild_tensor_v3"sv : "_rebuild_tensor_v2"sv;
  if (args.items.size() < (v3 ? 7u : 6u)) {
    throw std::runtime_error(c10::str(what, ": too few arguments (", args.items.size(), ")"));
  }
  const at::Tensor& flat = expect<Storage>(args.items[0], "a storage", what).flat;
  at::ScalarType dtype = flat.scalar_type();
  if (v3) {
    const Global& g = expect<Global>(args.items[6], "a torch dtype", what);
    const std::optional<at::ScalarType> named = dtype_global(g);
    if (!named) throw std::runtime_error(c10::str(what, ": ", g.qualified(), " is not a dtype"));
    dtype = *named;
  }
  return view_of_storage(flat, dtype, expect<std::int64_t>(args.items[1], "an int offset", what),
                         int_tuple(args.items[2], what), int_tuple(args.items[3], what));
}

Ref call_global(const Global& callable, const Tuple& args) {
  const std::string name = callable.qualified();
  if (name == kOrderedDict) {
    if (!args.items.empty()) throw std::runtime_error("OrderedDict(...) with arguments");
    return make(Dict{});
  }
  if (name == kRebuildTensorV2 || name == kRebuildTensorV3) {
    return make(rebuild_tensor(args, name == kRebuildTensorV3));
  }
  if (name == kRebuildParameter || name == kRebuildParameterWithState) {
    if (args.items.empty()) throw std::runtime_error(c10::str(name, ": no arguments"));
    return make(expect<at::Tensor>(args.items[0], "a tensor", name));
  }
  throw std::runtime_error(c10::str("cannot call ", name));
}

// ---------------------------------------------------------------------------------------------
// Opcodes (pickle protocol 2, plus FRAME/MEMOIZE/STACK_GLOBAL/BINUNICODE8 of protocol 4)

namespace op {
constexpr std::uint8_t MARK = '(', STOP = '.', POP = '0', POP_MARK = '1', DUP = '2';
constexpr std::uint8_t BININT = 'J', BININT1 = 'K', BININT2 = 'M', BINFLOAT = 'G', NONE = 'N';
constexpr std::uint8_t BINPERSID = 'Q', REDUCE = 'R', BINUNICODE = 'X', APPEND = 'a', BUILD = 'b';
constexpr std::uint8_t GLOBAL = 'c', APPENDS = 'e', BINGET = 'h', LONG_BINGET = 'j';
constexpr std::uint8_t BINPUT = 'q', LONG_BINPUT = 'r', SETITEM = 's', TUPLE = 't', SETITEMS = 'u';
constexpr std::uint8_t EMPTY_DICT = '}', EMPTY_LIST = ']', EMPTY_TUPLE = ')';
constexpr std::uint8_t PROTO = 0x80, NEWOBJ = 0x81, TUPLE1 = 0x85, TUPLE2 = 0x86, TUPLE3 = 0x87;
constexpr std::uint8_t NEWTRUE = 0x88, NEWFALSE = 0x89, LONG1 = 0x8a;
constexpr std::uint8_t SHORT_BINUNICODE = 0x8c, BINUNICODE8 = 0x8d;
constexpr std::uint8_t STACK_GLOBAL = 0x93, MEMOIZE = 0x94, FRAME = 0x95;
}  // namespace op

// Names of opcodes this reader refuses, for the error message.
std::string_view unsupported_opcode_name(std::uint8_t code) {
  switch (code) {
    case 'B':
      return "BINBYTES";
    case 'C':
      return "SHORT_BINBYTES";
    case 'F':
      return "FLOAT";
    case 'I':
      return "INT";
    case 'L':
      return "LONG";
    case 'P':
      return "PERSID";
    case 'S':
      return "STRING";
    case 'T':
      return "BINSTRING";
    case 'U':
      return "SHORT_BINSTRING";
    case 'V':
      return "UNICODE";
    case 'd':
      return "DICT";
    case 'g':
      return "GET";
    case 'i':
      return "INST";
    case 'l':
      return "LIST";
    case 'o':
      return "OBJ";
    case 'p':
      return "PUT";
    case 0x82:
      return "EXT1";
    case 0x83:
      return "EXT2";
    case 0x84:
      return "EXT4";
    case 0x8b:
      return "LONG4";
    case 0x8e:
      return "BINBYTES8";
    case 0x8f:
      return "EMPTY_SET";
    case 0x90:
      return "ADDITEMS";
    case 0x91:
      return "FROZENSET";
    case 0x92:
      return "NEWOBJ_EX";
    case 0x96:
      return "BYTEARRAY8";
    case 0x97:
      return "NEXT_BUFFER";
    case 0x98:
      return "READONLY_BUFFER";
    default:
      return "unknown";
  }
}

std::string hex_byte(std::uint8_t value) {
  constexpr char kHex[] = "0123456789abcdef";
  return {'0', 'x', kHex[value >> 4], kHex[value & 15]};
}

using PersistentLoad = std::function<Ref(const Tuple& pid)>;

class Unpickler {
 public:
  Unpickler(std::string_view data, PersistentLoad persistent_load)
      : data_(data), persistent_load_(std::move(persistent_load)) {}

  Ref run() {
    if (data_.empty() || static_cast<std::uint8_t>(data_[0]) != op::PROTO) {
      fail("not a protocol-2 pickle: it does not start with the PROTO opcode");
    }
    while (true) {
      op_start_ = pos_;
      const std::uint8_t code = read_u8();
      if (code == op::STOP) break;
      step(code);
    }
    if (stack_.size() != 1) fail(c10::str("STOP with ", stack_.size(), " values on the stack"));
    check_nesting();
    return stack_.back();
  }

  // What a failed run leaves may nest a million levels deep or contain itself: taken apart
  // iteratively, since shared_ptr's recursive destruction would overflow the stack or leak.
  ~Unpickler() {
    if (!nesting_checked_) dismantle();
  }
  Unpickler(const Unpickler&) = delete;
  Unpickler& operator=(const Unpickler&) = delete;

  // Python's own limit is the recursion limit (1,000) of what later walks the object.
  static constexpr std::size_t kMaxNesting = 1000;
  // Each memo entry costs at least two opcode bytes; this bounds the table of a hostile file.
  static constexpr std::size_t kMaxMemo = std::size_t{1} << 24;

 private:
  static void for_each_child(PyObject& object, const std::function<void(Ref&)>& visit) {
    if (auto* tuple = std::get_if<Tuple>(&object.value)) {
      for (Ref& item : tuple->items) visit(item);
    } else if (auto* list = std::get_if<List>(&object.value)) {
      for (Ref& item : list->items) visit(item);
    } else if (auto* dict = std::get_if<Dict>(&object.value)) {
      for (auto& [key, value] : dict->items) {
        visit(key);
        visit(value);
      }
    }
  }

  // Every object the run can still reach (the stack and the memo) nests at most kMaxNesting
  // containers deep and contains no cycle: depth-first, iterative, each object once.
  void check_nesting() {
    enum class Mark { open, done };
    std::unordered_map<const PyObject*, std::pair<Mark, std::size_t>> seen;  // -> (mark, height)
    std::vector<std::pair<PyObject*, bool>> work;  // (object, children already pushed)
    auto roots = stack_;
    for (const auto& [index, value] : memo_) roots.push_back(value);
    for (const Ref& root : roots) work.emplace_back(root.get(), false);
    while (!work.empty()) {
      auto [object, expanded] = work.back();
      if (!expanded) {
        const auto [it, fresh] = seen.try_emplace(object, Mark::open, 0);
        if (!fresh) {
          if (it->second.first == Mark::open) fail("a container contains itself");
          work.pop_back();
          continue;
        }
        work.back().second = true;
        for_each_child(*object, [&](Ref& child) {
          const auto found = seen.find(child.get());
          if (found != seen.end() && found->second.first == Mark::open) {
            fail("a container contains itself");
          }
          if (found == seen.end()) work.emplace_back(child.get(), false);
        });
        continue;
      }
      work.pop_back();
      std::size_t height = 0;
      for_each_child(*object, [&](Ref& child) {
        height = std::max(height, seen.at(child.get()).second + 1);
      });
      if (height > kMaxNesting) {
        fail(c10::str("containers nest more than ", kMaxNesting, " levels deep"));
      }
      seen[object] = {Mark::done, height};
    }
    nesting_checked_ = true;
  }

  void dismantle() noexcept {
    std::vector<Ref> work = std::move(stack_);
    for (auto& [index, value] : memo_) work.push_back(std::move(value));
    memo_.clear();
    while (!work.empty()) {
      Ref object = std::move(work.back());
      work.pop_back();
      for_each_child(*object, [&](Ref& child) { work.push_back(std::move(child)); });
      if (auto* tuple = std::get_if<Tuple>(&object->value)) tuple->items.clear();
      if (auto* list = std::get_if<List>(&object->value)) list->items.clear();
      if (auto* dict = std::get_if<Dict>(&object->value)) dict->items.clear();
    }
  }

  [[noreturn]] void fail(const std::string& message) const {
    throw std::runtime_error(c10::str("data.pkl byte ", op_start_, ": ", message));
  }

  // --- input -------------------------------------------------------------------------------
  std::string_view read_bytes(std::uint64_t n) {
    if (n > data_.size() - pos_) fail("pickle ends in the middle of an opcode");
    const std::string_view out = data_.substr(pos_, n);
    pos_ += n;
    return out;
  }
  template <class T>
  T read_le() {
    T value;
    std::memcpy(&value, read_bytes(sizeof(T)).data(), sizeof(T));
    return value;  // little-endian host: see safetensors.cpp
  }
  std::uint8_t read_u8() { return read_le<std::uint8_t>(); }
  std::string read_line() {
    const std::size_t end = data_.find('\n', pos_);
    if (end == std::string_view::npos) fail("GLOBAL name without a newline");
    std::string line(data_.substr(pos_, end - pos_));
    pos_ = end + 1;
    return line;
  }

  // --- stack -------------------------------------------------------------------------------
  void push(Ref value) { stack_.push_back(std::move(value)); }
  Ref pop() {
    if (stack_.size() <= marks_floor()) fail("pop from an empty stack");
    Ref value = std::move(stack_.back());
    stack_.pop_back();
    return value;
  }
  Ref& top() {
    if (stack_.size() <= marks_floor()) fail("empty stack");
    return stack_.back();
  }
  std::size_t marks_floor() const { return marks_.empty() ? 0 : marks_.back(); }
  std::vector<Ref> pop_mark() {
    if (marks_.empty()) fail("no MARK on the stack");
    std::vector<Ref> items(stack_.begin() + static_cast<std::ptrdiff_t>(marks_.back()),
                           stack_.end());
    stack_.resize(marks_.back());
    marks_.pop_back();
    return items;
  }
  template <class T>
  T& top_as(std::string_view expected) {
    if (auto* value = std::get_if<T>(&top()->value)) return *value;
    fail(c10::str("expected ", expected, " on the stack, got ", type_name(*top())));
  }

  // --- opcodes -----------------------------------------------------------------------------
  void step(std::uint8_t code) {
    if (step_structure(code) || step_scalar(code) || step_object(code)) return;
    fail(c10::str("unsupported pickle opcode ", hex_byte(code), " (", unsupported_opcode_name(code),
                  ")"));
  }

  bool step_structure(std::uint8_t code) {
    switch (code) {
      case op::PROTO:
        check_protocol(read_u8());
        return true;
      case op::FRAME:
        read_le<std::uint64_t>();
        return true;
      case op::MARK:
        marks_.push_back(stack_.size());
        return true;
      case op::POP:
        pop();
        return true;
      case op::POP_MARK:
        pop_mark();
        return true;
      case op::DUP:
        push(top());
        return true;
      case op::EMPTY_DICT:
        push(make(Dict{}));
        return true;
      case op::EMPTY_LIST:
        push(make(List{}));
        return true;
      case op::EMPTY_TUPLE:
        push(make(Tuple{}));
        return true;
      case op::TUPLE:
        push(make(Tuple{pop_mark()}));
        return true;
      case op::TUPLE1:
        push_tuple(1);
        return true;
      case op::TUPLE2:
        push_tuple(2);
        return true;
      case op::TUPLE3:
        push_tuple(3);
        return true;
      case op::APPEND:
        append({pop()});
        return true;
      case op::APPENDS:
        append(pop_mark());
        return true;
      case op::SETITEM:
        set_items(pop_n(2));
        return true;
      case op::SETITEMS:
        set_items(pop_mark());
        return true;
      case op::BINPUT:
        memoize(read_u8());
        return true;
      case op::LONG_BINPUT:
        memoize(read_le<std::uint32_t>());
        return true;
      case op::MEMOIZE:
        memoize(static_cast<std::uint32_t>(memo_.size()));
        return true;
      case op::BINGET:
        push(memo_get(read_u8()));
        return true;
      case op::LONG_BINGET:
        push(memo_get(read_le<std::uint32_t>()));
        return true;
      default:
        return false;
    }
  }

  bool step_scalar(std::uint8_t code) {
    switch (code) {
      case op::NONE:
        push(make(None{}));
        return true;
      case op::NEWTRUE:
        push(make(true));
        return true;
      case op::NEWFALSE:
        push(make(false));
        return true;
      case op::BININT:
        push(make(std::int64_t{read_le<std::int32_t>()}));
        return true;
      case op::BININT1:
        push(make(std::int64_t{read_u8()}));
        return true;
      case op::BININT2:
        push(make(std::int64_t{read_le<std::uint16_t>()}));
        return true;
      case op::LONG1:
        push(make(read_long1()));
        return true;
      case op::BINFLOAT:
        push(make(read_binfloat()));
        return true;
      case op::SHORT_BINUNICODE:
        push_string(read_u8());
        return true;
      case op::BINUNICODE:
        push_string(read_le<std::uint32_t>());
        return true;
      case op::BINUNICODE8:
        push_string(read_le<std::uint64_t>());
        return true;
      default:
        return false;
    }
  }

  bool step_object(std::uint8_t code) {
    switch (code) {
      case op::GLOBAL: {
        std::string module = read_line();
        push_global(std::move(module), read_line());
        return true;
      }
      case op::STACK_GLOBAL: {
        std::string name = expect<std::string>(pop(), "a str", "STACK_GLOBAL");
        push_global(expect<std::string>(pop(), "a str", "STACK_GLOBAL"), std::move(name));
        return true;
      }
      case op::REDUCE:
      case op::NEWOBJ:
        call();
        return true;
      case op::BUILD:
        build();
        return true;
      case op::BINPERSID:
        persistent_load();
        return true;
      default:
        return false;
    }
  }

  void check_protocol(std::uint8_t version) {
    if (version != 2) {
      fail(c10::str("pickle protocol ", int{version},
                    " is not supported: expected protocol 2, torch.save's default "
                    "(re-save without pickle_protocol)"));
    }
  }

  std::vector<Ref> pop_n(std::size_t n) {
    std::vector<Ref> items(n);
    for (std::size_t i = n; i-- > 0;) items[i] = pop();
    return items;
  }
  void push_tuple(std::size_t n) { push(make(Tuple{pop_n(n)})); }

  void append(std::vector<Ref> items) {
    auto& list = top_as<List>("a list").items;
    list.insert(list.end(), items.begin(), items.end());
  }

  void set_items(std::vector<Ref> items) {
    if (items.size() % 2 != 0) fail("SETITEMS with an odd number of values");
    auto& dict = top_as<Dict>("a dict").items;
    for (std::size_t i = 0; i < items.size(); i += 2) dict.emplace_back(items[i], items[i + 1]);
  }

  void memoize(std::uint32_t index) {
    if (memo_.size() >= kMaxMemo && !memo_.contains(index)) {
      fail(c10::str("more than ", kMaxMemo, " memo entries"));
    }
    memo_[index] = top();
  }

  Ref memo_get(std::uint32_t index) {
    const auto it = memo_.find(index);
    if (it == memo_.end()) fail(c10::str("memo entry ", index, " was never stored"));
    return it->second;
  }

  std::int64_t read_long1() {
    const std::uint8_t n = read_u8();
    if (n > 8) fail(c10::str("integer of ", int{n}, " bytes does not fit int64"));
    const std::string_view bytes = read_bytes(n);
    std::uint64_t value = 0;
    for (std::size_t i = 0; i < n; ++i) {
      value |= std::uint64_t{static_cast<std::uint8_t>(bytes[i])} << (8 * i);
    }
    if (n > 0 && n < 8 && (bytes[n - 1] & 0x80)) value |= ~std::uint64_t{0} << (8 * n);
    return static_cast<std::int64_t>(value);
  }

  double read_binfloat() {
    const std::uint64_t big_endian = read_le<std::uint64_t>();
    return std::bit_cast<double>(__builtin_bswap64(big_endian));
  }

  void push_string(std::uint64_t length) { push(make(std::string(read_bytes(length)))); }

  void push_global(std::string module, std::string name) {
    Global global{std::move(module), std::move(name)};
    if (!is_allowed_global(global)) {
      fail(c10::str("unsupported global '", global.qualified(),
                    "': only state-dict contents (collections.OrderedDict, torch tensors and "
                    "storages) can be loaded"));
    }
    push(make(std::move(global)));
  }

  void call() {
    const Ref args = pop();
    const Ref callable = pop();
    try {
      push(call_global(expect<Global>(callable, "a global", "REDUCE"),
                       expect<Tuple>(args, "an argument tuple", "REDUCE")));
    } catch (const std::runtime_error& e) {
      fail(e.what());
    }
  }

  void persistent_load() {
    const Ref pid = pop();
    try {
      push(persistent_load_(expect<Tuple>(pid, "a tuple", "BINPERSID")));
    } catch (const std::runtime_error& e) {
      fail(e.what());
    }
  }

  // The state of an OrderedDict is its `_metadata` attribute (module versions): not needed.
  void build() {
    pop();
    top_as<Dict>("a dict (BUILD sets object state only on an OrderedDict)");
  }

  std::string_view data_;
  std::size_t pos_ = 0;
  std::size_t op_start_ = 0;
  std::vector<Ref> stack_;
  std::vector<std::size_t> marks_;  // stack sizes at each MARK
  std::unordered_map<std::uint32_t, Ref> memo_;
  PersistentLoad persistent_load_;
  bool nesting_checked_ = false;
};

// ---------------------------------------------------------------------------------------------
// The zip archive

// Reads storages on demand, once each: tensors that share a storage share it after loading.
class StorageLoader {
 public:
  explicit StorageLoader(caffe2::serialize::PyTorchStreamReader& reader) : reader_(reader) {}

  // pid = ('storage', storage_type, key, location, numel)
  Ref operator()(const Tuple& pid) {
    constexpr std::string_view what = "persistent id";
    if (pid.items.size() != 5 ||
        expect<std::string>(pid.items[0], "'storage'", what) != "storage") {
      throw std::runtime_error("persistent id is not ('storage', type, key, location, numel)");
    }
    const Global& type = expect<Global>(pid.items[1], "a storage type", what);
    const std::optional<at::ScalarType> dtype = storage_dtype(type);
    if (!dtype) throw std::runtime_error(c10::str(type.qualified(), " is not a storage type"));
    const std::string& key = expect<std::string>(pid.items[2], "a str key", what);
    const std::int64_t numel = expect<std::int64_t>(pid.items[4], "an int numel", what);
    auto [it, inserted] = cache_.try_emplace(key);
    if (inserted) it->second = read(key, *dtype, numel);
    return make(Storage{it->second});
  }

 private:
  // The record's size is checked against numel before anything is allocated: numel comes from
  // the pickle, and a hostile one may ask for any amount of memory.
  at::Tensor read(const std::string& key, at::ScalarType dtype, std::int64_t numel) {
    if (numel < 0) throw std::runtime_error(c10::str("storage ", key, " has numel ", numel));
    if (numel == 0) return at::empty({0}, at::TensorOptions().dtype(dtype));
    const std::string record = "data/" + key;
    if (!reader_.hasRecord(record)) {
      throw std::runtime_error(c10::str("storage ", key, ": no record ", record));
    }
    const std::size_t size = reader_.getRecordSize(record);
    std::uint64_t expected = 0;
    if (__builtin_mul_overflow(static_cast<std::uint64_t>(numel), c10::elementSize(dtype),
                               &expected) ||
        size != expected) {
      throw std::runtime_error(c10::str("record ", record, " holds ", size, " bytes, not ", numel,
                                        " x ", dtype));
    }
    at::Tensor flat = at::empty({numel}, at::TensorOptions().dtype(dtype));
    reader_.getRecord(record, flat.data_ptr(), size);
    return flat;
  }

  caffe2::serialize::PyTorchStreamReader& reader_;
  std::unordered_map<std::string, at::Tensor> cache_;
};

constexpr std::string_view kZipSignature("PK\x03\x04", 4);

bool has_zip_signature(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(c10::str("cannot open: ", std::strerror(errno)));
  if (fs::is_directory(path)) throw std::runtime_error("is a directory, not a file");
  char magic[4] = {};
  in.read(magic, 4);
  return in.gcount() == 4 && std::string_view(magic, 4) == kZipSignature;
}

void require_zip(bool is_zip) {
  if (!is_zip) {
    throw std::runtime_error(
        "not a torch.save zip archive (the legacy pre-1.6 format and other files are not "
        "supported; re-save with torch.save in a current PyTorch)");
  }
}

// An archive already in memory, for PyTorchStreamReader (which otherwise reads a file).
class BytesReadAdapter : public caffe2::serialize::ReadAdapterInterface {
 public:
  explicit BytesReadAdapter(std::string_view bytes) : bytes_(bytes) {}
  size_t size() const override { return bytes_.size(); }
  size_t read(uint64_t pos, void* buf, size_t n, const char* /*what*/) const override {
    if (pos >= bytes_.size()) return 0;
    n = std::min<std::size_t>(n, bytes_.size() - pos);
    std::memcpy(buf, bytes_.data() + pos, n);
    return n;
  }

 private:
  std::string_view bytes_;
};

Ref unpickle_archive(caffe2::serialize::PyTorchStreamReader& reader) {
  if (reader.hasRecord("byteorder")) {
    const auto [data, size] = reader.getRecord("byteorder");
    const std::string_view order(static_cast<const char*>(data.get()), size);
    if (order != "little") throw std::runtime_error(c10::str("unsupported byteorder ", order));
  }
  const auto [data, size] = reader.getRecord("data.pkl");
  StorageLoader storages(reader);
  Unpickler unpickler(std::string_view(static_cast<const char*>(data.get()), size),
                      [&](const Tuple& pid) { return storages(pid); });
  return unpickler.run();
}

// ---------------------------------------------------------------------------------------------
// From the unpickled object to a state dict

const std::string* string_key(const Ref& key) { return std::get_if<std::string>(&key->value); }

const Dict* unwrap_state_dict(const Dict& top, std::vector<std::string>& notes) {
  for (const auto& [key, value] : top.items) {
    const std::string* name = string_key(key);
    if (name == nullptr || *name != "state_dict") continue;
    const Dict* inner = std::get_if<Dict>(&value->value);
    if (inner == nullptr) return &top;
    std::string others;
    for (const auto& entry : top.items) {
      const std::string* other = string_key(entry.first);
      if (other != nullptr && *other != "state_dict") {
        others += (others.empty() ? "" : ", ") + *other;
      }
    }
    notes.push_back("using the checkpoint's 'state_dict' entry" +
                    (others.empty() ? std::string() : " (ignoring " + others + ")"));
    return inner;
  }
  return &top;
}

TensorMap collect_tensors(const Dict& dict, std::vector<std::string>& notes) {
  TensorMap tensors;
  for (const auto& [key, value] : dict.items) {
    const std::string* name = string_key(key);
    if (name == nullptr) {
      notes.push_back("skipped an entry with a non-string key (" + type_name(*key) + ")");
    } else if (const auto* tensor = std::get_if<at::Tensor>(&value->value)) {
      tensors.emplace(*name, *tensor);
    } else {
      notes.push_back("skipped non-tensor entry '" + *name + "' (" + type_name(*value) + ")");
    }
  }
  return tensors;
}

bool all_keys_start_with(const TensorMap& tensors, std::string_view prefix) {
  for (const auto& [key, tensor] : tensors) {
    if (key.size() <= prefix.size() || !key.starts_with(prefix)) return false;
  }
  return !tensors.empty();
}

// Wrappers nest (DDP around torch.compile gives "module._orig_mod."), so strip repeatedly.
void strip_wrapper_prefixes(TensorMap& tensors, std::vector<std::string>& notes) {
  constexpr std::array<std::string_view, 3> kPrefixes{"module.", "_orig_mod.", "dit."};
  bool stripped = true;
  while (stripped) {
    stripped = false;
    for (std::string_view prefix : kPrefixes) {
      if (!all_keys_start_with(tensors, prefix)) continue;
      TensorMap renamed;
      for (auto& [key, tensor] : tensors) renamed.emplace(key.substr(prefix.size()), tensor);
      notes.push_back(
          c10::str("stripped prefix '", prefix, "' from all ", tensors.size(), " keys"));
      tensors = std::move(renamed);
      stripped = true;
    }
  }
}

TensorMap to_state_dict(const Ref& root, std::vector<std::string>& notes) {
  const Dict& top = expect<Dict>(root, "a dict of tensors", "the pickled object");
  TensorMap tensors = collect_tensors(*unwrap_state_dict(top, notes), notes);
  if (tensors.empty()) throw std::runtime_error("no tensors found in the checkpoint");
  strip_wrapper_prefixes(tensors, notes);
  return tensors;
}

// The archive `open` gives, as a state dict; errors start with `name`.
// PyTorchStreamReader trusts the sizes the zip's headers declare, as pytorch/pytorch#185440 shows
// for reads: its constructor allocates the declared size of its version records before reading
// them (tests/fuzz/crashes/torch_checkpoint/declared_record_size_4_gib: 4 GiB for a 1.8 KB file).
// The allocation is only reserved, never touched; the reader then refuses the archive, which
// reaches the user as one line. Our storage reads check the size against the pickle first
// (StorageLoader::read), and BytesReadAdapter clamps reads to the bytes there are.
template <class OpenReader>
TensorMap state_dict_of(const std::string& name, OpenReader open, std::vector<std::string>* notes) {
  std::vector<std::string> local_notes;
  try {
    caffe2::serialize::PyTorchStreamReader reader = open();
    TensorMap tensors = to_state_dict(unpickle_archive(reader), local_notes);
    if (notes != nullptr) notes->insert(notes->end(), local_notes.begin(), local_notes.end());
    return tensors;
  } catch (const std::exception& e) {
    throw std::runtime_error(c10::str(name, ": ", util::error_message(e)));
  }
}

}  // namespace

TensorMap load_torch_state_dict(const fs::path& path, std::vector<std::string>* notes) {
  return state_dict_of(
      path.string(),
      [&] {
        require_zip(has_zip_signature(path));
        return caffe2::serialize::PyTorchStreamReader(path.string());
      },
      notes);
}

TensorMap parse_torch_state_dict(std::string_view bytes, const std::string& name_for_errors,
                                 std::vector<std::string>* notes) {
  return state_dict_of(
      name_for_errors,
      [&] {
        require_zip(bytes.starts_with(kZipSignature));
        return caffe2::serialize::PyTorchStreamReader(std::make_shared<BytesReadAdapter>(bytes));
      },
      notes);
}

}  // namespace microdit::io
