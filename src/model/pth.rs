//! Reading PyTorch checkpoints (`torch.save` of a state dict) without Python: the zip
//! format (PyTorch ≥ 1.6: `<archive>/data.pkl` plus one raw entry per storage) and the
//! legacy format (torchvision's 2017 ResNet50 files: five pickles in a row, then the
//! storages' bytes). A small pickle machine understands what `torch.save` writes for
//! tensors, dicts and `OrderedDict`s; anything else (a pickled `nn.Module`, custom
//! classes) is refused by name, never executed.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use tch::{Kind, Tensor};

/// The legacy format's first pickle: this number.
const LEGACY_MAGIC: u128 = 0x1950a86a20f9469cfc6c;

#[derive(Debug, thiserror::Error)]
pub enum PthError {
    #[error("{}: cannot read: {source}", .file.display())]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not a PyTorch checkpoint ({reason})", .file.display())]
    Format { file: PathBuf, reason: String },
    #[error("{}: {reason}", .file.display())]
    Content { file: PathBuf, reason: String },
}

/// A checkpoint's tensors under their state-dict names (`layer1.0.conv1.weight`), in
/// file order. A `{"state_dict": …}` or `{"model": …}` wrapper is looked through.
pub fn read_state_dict(file: &Path) -> Result<Vec<(String, Tensor)>, PthError> {
    let bytes = std::fs::read(file).map_err(|source| PthError::Read {
        file: file.to_path_buf(),
        source,
    })?;
    let format = |reason: String| PthError::Format {
        file: file.to_path_buf(),
        reason,
    };
    let (root, storages) = if bytes.starts_with(b"PK\x03\x04") {
        read_zip(&bytes).map_err(format)?
    } else if bytes.starts_with(&[0x80, 0x02]) {
        read_legacy(&bytes).map_err(format)?
    } else if bytes.starts_with(b"\x1f\x8b") || bytes.get(257..262) == Some(b"ustar") {
        return Err(format(
            "a compressed or tar archive; torch < 0.4's tar format is not supported".into(),
        ));
    } else {
        return Err(format(
            "neither the zip nor the legacy torch.save format".into(),
        ));
    };
    let content = |reason: String| PthError::Content {
        file: file.to_path_buf(),
        reason,
    };
    let dict = state_dict_of(&root).ok_or_else(|| {
        content(format!(
            "holds {}, not a state dict of tensors",
            root.describe()
        ))
    })?;
    let mut tensors = Vec::new();
    for (key, value) in dict.borrow().iter() {
        let Value::Str(name) = key else { continue };
        if let Value::Tensor(t) = value {
            let tensor = t
                .build(&storages)
                .map_err(|e| content(format!("`{name}`: {e}")))?;
            tensors.push((name.clone(), tensor));
        }
    }
    if tensors.is_empty() {
        return Err(content("no tensors in its state dict".into()));
    }
    Ok(tensors)
}

/// The dict of tensors in `root`, looking through the usual training wrappers.
fn state_dict_of(root: &Value) -> Option<Rc<RefCell<Vec<(Value, Value)>>>> {
    let Value::Dict(dict) = root else { return None };
    let entries = dict.borrow();
    if entries.iter().any(|(_, v)| matches!(v, Value::Tensor(_))) {
        return Some(dict.clone());
    }
    for wrapper in ["state_dict", "model", "model_state_dict"] {
        let inner = entries
            .iter()
            .find(|(k, _)| matches!(k, Value::Str(s) if s == wrapper));
        if let Some(found) = inner.and_then(|(_, v)| state_dict_of(v)) {
            return Some(found);
        }
    }
    None
}

/// A storage's bytes by key, as the file holds them (little-endian).
type Storages = HashMap<String, Vec<u8>>;

fn read_zip(bytes: &[u8]) -> Result<(Value, Storages), String> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| format!("a broken zip, truncated?: {e}"))?;
    let names: Vec<String> = archive.file_names().map(str::to_string).collect();
    let pickle = names
        .iter()
        .find(|n| n.ends_with("data.pkl") && n.matches('/').count() == 1)
        .ok_or("a zip without <archive>/data.pkl")?
        .clone();
    let prefix = pickle.trim_end_matches("data.pkl").to_string();
    let read = |archive: &mut zip::ZipArchive<_>, name: &str| -> Result<Vec<u8>, String> {
        let mut entry = archive.by_name(name).map_err(|e| format!("{name}: {e}"))?;
        let mut out = Vec::with_capacity(entry.size() as usize);
        entry
            .read_to_end(&mut out)
            .map_err(|e| format!("{name}: {e}"))?;
        Ok(out)
    };
    if let Ok(order) = read(&mut archive, &format!("{prefix}byteorder")) {
        if order.trim_ascii() != b"little" {
            return Err("a big-endian checkpoint".into());
        }
    }
    let data = read(&mut archive, &pickle)?;
    let mut machine = Machine::new(&data);
    let root = machine.run()?;
    let mut storages = Storages::new();
    for key in machine.storage_keys() {
        let bytes = read(&mut archive, &format!("{prefix}data/{key}"))?;
        storages.insert(key, bytes);
    }
    Ok((root, storages))
}

fn read_legacy(bytes: &[u8]) -> Result<(Value, Storages), String> {
    let mut at = 0;
    let next = |at: &mut usize| -> Result<(Value, Vec<String>), String> {
        let mut machine = Machine::new(&bytes[*at..]);
        let value = machine.run()?;
        *at += machine.pos;
        Ok((value, machine.storage_keys()))
    };
    let (magic, _) = next(&mut at)?;
    if !matches!(magic, Value::Int(m) if m as u128 == LEGACY_MAGIC) {
        return Err("a pickle, but not one torch.save wrote (no magic number)".into());
    }
    let (version, _) = next(&mut at)?;
    if !matches!(version, Value::Int(1001)) {
        return Err(format!("legacy protocol {version:?}, not 1001"));
    }
    let _system = next(&mut at)?;
    let (root, _) = next(&mut at)?;
    let (keys, _) = next(&mut at)?;
    let Value::List(keys) = keys else {
        return Err("no storage list after the data".into());
    };
    let mut storages = Storages::new();
    let mut element_sizes = HashMap::new();
    collect_storages(&root, &mut element_sizes);
    for key in keys.borrow().iter() {
        let Value::Str(key) = key else {
            return Err("a storage key that is not a string".into());
        };
        let size = *element_sizes
            .get(key)
            .ok_or_else(|| format!("storage {key} is not used by any tensor"))?;
        let count = bytes
            .get(at..at + 8)
            .ok_or("the file ends inside the storages (truncated?)")?;
        let count = u64::from_le_bytes(count.try_into().unwrap()) as usize;
        at += 8;
        let length = count * size;
        let data = bytes
            .get(at..at + length)
            .ok_or("the file ends inside the storages (truncated?)")?;
        storages.insert(key.clone(), data.to_vec());
        at += length;
    }
    Ok((root, storages))
}

/// Every storage the tensors under `value` use: key → element size in bytes.
fn collect_storages(value: &Value, out: &mut HashMap<String, usize>) {
    match value {
        Value::Tensor(t) => {
            out.insert(t.storage.key.clone(), t.storage.kind.elt_size_in_bytes());
        }
        Value::Dict(d) => d
            .borrow()
            .iter()
            .for_each(|(_, v)| collect_storages(v, out)),
        Value::List(l) => l.borrow().iter().for_each(|v| collect_storages(v, out)),
        Value::Tuple(t) => t.iter().for_each(|v| collect_storages(v, out)),
        _ => {}
    }
}

/// A storage a tensor points into: its key in the file and its element type.
#[derive(Debug, Clone)]
struct StorageRef {
    key: String,
    kind: Kind,
}

/// `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, …)`.
#[derive(Debug, Clone)]
struct TensorRef {
    storage: StorageRef,
    offset: i64,
    size: Vec<i64>,
    stride: Vec<i64>,
}

impl TensorRef {
    fn build(&self, storages: &Storages) -> Result<Tensor, String> {
        let bytes = storages
            .get(&self.storage.key)
            .ok_or_else(|| format!("storage {} is missing", self.storage.key))?;
        let element = self.storage.kind.elt_size_in_bytes();
        let count = (bytes.len() / element) as i64;
        // The furthest element the view reaches must be inside the storage.
        let reach = self.offset
            + self
                .size
                .iter()
                .zip(&self.stride)
                .map(|(n, s)| (n - 1).max(0) * s)
                .sum::<i64>();
        if self.size.iter().any(|&n| n < 0)
            || self.stride.iter().any(|&s| s < 0)
            || self.offset < 0
            || (self.size.iter().all(|&n| n > 0) && reach >= count)
        {
            return Err(format!(
                "size {:?} stride {:?} at offset {} does not fit its storage of {count} elements",
                self.size, self.stride, self.offset
            ));
        }
        let flat = Tensor::from_data_size(bytes, &[count], self.storage.kind);
        Ok(flat
            .as_strided(self.size.as_slice(), self.stride.as_slice(), self.offset)
            .contiguous())
    }
}

/// What the pickle machine makes. Containers are shared, as in Python: the memo and the
/// stack may hold the same dict while it is filled.
#[derive(Debug, Clone)]
// Scalars other than ints are kept only to be shown in error messages.
#[allow(dead_code)]
enum Value {
    None,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<Value>),
    List(Rc<RefCell<Vec<Value>>>),
    Dict(Rc<RefCell<Vec<(Value, Value)>>>),
    /// `module.name`, not yet called.
    Global(String),
    Storage(StorageRef),
    Tensor(TensorRef),
    /// The stack's mark.
    Mark,
}

impl Value {
    fn describe(&self) -> String {
        match self {
            Value::Dict(_) => "a dict without tensors".into(),
            Value::Global(name) => format!("an object of {name}"),
            Value::List(_) | Value::Tuple(_) => "a list".into(),
            other => format!("{other:?}"),
        }
    }

    fn int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => i64::try_from(*i).ok(),
            _ => None,
        }
    }

    fn ints(&self) -> Option<Vec<i64>> {
        match self {
            Value::Tuple(items) => items.iter().map(Value::int).collect(),
            Value::List(items) => items.borrow().iter().map(Value::int).collect(),
            _ => None,
        }
    }
}

/// The element type of a typed storage class (`torch.FloatStorage`).
fn storage_kind(class: &str) -> Option<Kind> {
    Some(match class.strip_prefix("torch.")? {
        "FloatStorage" => Kind::Float,
        "DoubleStorage" => Kind::Double,
        "HalfStorage" => Kind::Half,
        "BFloat16Storage" => Kind::BFloat16,
        "LongStorage" => Kind::Int64,
        "IntStorage" => Kind::Int,
        "ShortStorage" => Kind::Int16,
        "CharStorage" => Kind::Int8,
        "ByteStorage" => Kind::Uint8,
        "BoolStorage" => Kind::Bool,
        _ => return None,
    })
}

/// The pickle machine: the opcodes of protocols 2–5 that `torch.save` and Python's
/// pickler write for plain data; calls only the few constructors a state dict needs.
struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    memo: HashMap<u32, Value>,
    storages: Vec<String>,
}

impl<'a> Machine<'a> {
    fn new(data: &'a [u8]) -> Machine<'a> {
        Machine {
            data,
            pos: 0,
            stack: Vec::new(),
            memo: HashMap::new(),
            storages: Vec::new(),
        }
    }

    /// The storages the pickle referred to, in order of first use.
    fn storage_keys(&self) -> Vec<String> {
        self.storages.clone()
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let data: &'a [u8] = self.data;
        let out = data
            .get(self.pos..self.pos + n)
            .ok_or("the pickle ends early (truncated?)")?;
        self.pos += n;
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().unwrap()))
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }

    fn line(&mut self) -> Result<String, String> {
        let rest = &self.data[self.pos..];
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or("the pickle ends early (truncated?)")?;
        self.pos += end + 1;
        Ok(String::from_utf8_lossy(&rest[..end]).into_owned())
    }

    fn text(&mut self, n: usize) -> Result<String, String> {
        String::from_utf8(self.take(n)?.to_vec()).map_err(|e| format!("a string: {e}"))
    }

    fn pop(&mut self) -> Result<Value, String> {
        self.stack.pop().ok_or_else(|| "stack underflow".into())
    }

    fn top(&mut self) -> Result<&mut Value, String> {
        self.stack
            .last_mut()
            .ok_or_else(|| "stack underflow".into())
    }

    /// Everything above the topmost mark, which is removed.
    fn pop_mark(&mut self) -> Result<Vec<Value>, String> {
        let mark = self
            .stack
            .iter()
            .rposition(|v| matches!(v, Value::Mark))
            .ok_or("no mark on the stack")?;
        let items = self.stack.split_off(mark + 1);
        self.stack.pop();
        Ok(items)
    }

    fn get(&self, index: u32) -> Result<Value, String> {
        self.memo
            .get(&index)
            .cloned()
            .ok_or_else(|| format!("memo {index} is empty"))
    }

    fn run(&mut self) -> Result<Value, String> {
        loop {
            let op = self.u8()?;
            match op {
                0x80 => {
                    let protocol = self.u8()?;
                    if protocol > 5 {
                        return Err(format!("pickle protocol {protocol}"));
                    }
                }
                0x95 => {
                    self.u64()?; // FRAME: a length hint
                }
                b'.' => return self.pop(),
                b'(' => self.stack.push(Value::Mark),
                b'N' => self.stack.push(Value::None),
                0x88 => self.stack.push(Value::Bool(true)),
                0x89 => self.stack.push(Value::Bool(false)),
                b'J' => {
                    let v = self.u32()? as i32;
                    self.stack.push(Value::Int(v as i128));
                }
                b'K' => {
                    let v = self.u8()?;
                    self.stack.push(Value::Int(v as i128));
                }
                b'M' => {
                    let v = self.u16()?;
                    self.stack.push(Value::Int(v as i128));
                }
                0x8a | 0x8b => {
                    let n = if op == 0x8a {
                        self.u8()? as usize
                    } else {
                        self.u32()? as usize
                    };
                    let bytes = self.take(n)?;
                    if n > 16 {
                        return Err("an integer wider than 128 bits".into());
                    }
                    let negative = bytes.last().is_some_and(|b| b & 0x80 != 0);
                    let mut buf = [if negative { 0xff } else { 0 }; 16];
                    buf[..n].copy_from_slice(bytes);
                    self.stack.push(Value::Int(i128::from_le_bytes(buf)));
                }
                b'I' => {
                    let line = self.line()?;
                    let v = match line.as_str() {
                        "00" => Value::Bool(false),
                        "01" => Value::Bool(true),
                        n => Value::Int(n.parse().map_err(|_| format!("INT {n}"))?),
                    };
                    self.stack.push(v);
                }
                b'L' => {
                    let line = self.line()?;
                    let n = line.trim_end_matches('L');
                    self.stack
                        .push(Value::Int(n.parse().map_err(|_| format!("LONG {n}"))?));
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.take(8)?.try_into().unwrap());
                    self.stack.push(Value::Float(v));
                }
                b'F' => {
                    let line = self.line()?;
                    self.stack.push(Value::Float(
                        line.parse().map_err(|_| format!("FLOAT {line}"))?,
                    ));
                }
                b'X' => {
                    let n = self.u32()? as usize;
                    let s = self.text(n)?;
                    self.stack.push(Value::Str(s));
                }
                0x8c => {
                    let n = self.u8()? as usize;
                    let s = self.text(n)?;
                    self.stack.push(Value::Str(s));
                }
                0x8d => {
                    let n = self.u64()? as usize;
                    let s = self.text(n)?;
                    self.stack.push(Value::Str(s));
                }
                b'V' => {
                    let s = self.line()?;
                    self.stack.push(Value::Str(s));
                }
                b'T' | b'U' => {
                    let n = if op == b'T' {
                        self.u32()? as usize
                    } else {
                        self.u8()? as usize
                    };
                    let s = String::from_utf8_lossy(self.take(n)?).into_owned();
                    self.stack.push(Value::Str(s));
                }
                b'S' => {
                    let line = self.line()?;
                    self.stack
                        .push(Value::Str(line.trim_matches(['\'', '"']).to_string()));
                }
                b'B' | b'C' | 0x8e => {
                    let n = match op {
                        b'B' => self.u32()? as usize,
                        b'C' => self.u8()? as usize,
                        _ => self.u64()? as usize,
                    };
                    let b = self.take(n)?.to_vec();
                    self.stack.push(Value::Bytes(b));
                }
                b')' => self.stack.push(Value::Tuple(Vec::new())),
                b't' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::Tuple(items));
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    if self.stack.len() < n {
                        return Err("stack underflow".into());
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    self.stack.push(Value::Tuple(items));
                }
                b']' => self.stack.push(Value::List(Rc::default())),
                b'l' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::List(Rc::new(RefCell::new(items))));
                }
                b'}' => self.stack.push(Value::Dict(Rc::default())),
                b'd' => {
                    let items = self.pop_mark()?;
                    let pairs = pairs(items)?;
                    self.stack.push(Value::Dict(Rc::new(RefCell::new(pairs))));
                }
                b'a' => {
                    let item = self.pop()?;
                    match self.top()? {
                        Value::List(list) => list.borrow_mut().push(item),
                        other => return Err(format!("APPEND to {other:?}")),
                    }
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    match self.top()? {
                        Value::List(list) => list.borrow_mut().extend(items),
                        other => return Err(format!("APPENDS to {other:?}")),
                    }
                }
                b's' => {
                    let value = self.pop()?;
                    let key = self.pop()?;
                    match self.top()? {
                        Value::Dict(dict) => dict.borrow_mut().push((key, value)),
                        other => return Err(format!("SETITEM on {other:?}")),
                    }
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    let items = pairs(items)?;
                    match self.top()? {
                        Value::Dict(dict) => dict.borrow_mut().extend(items),
                        other => return Err(format!("SETITEMS on {other:?}")),
                    }
                }
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let top = self.top()?.clone();
                    self.stack.push(top);
                }
                b'p' => {
                    let index = self.line()?.parse().map_err(|_| "PUT")?;
                    let top = self.top()?.clone();
                    self.memo.insert(index, top);
                }
                b'q' => {
                    let index = self.u8()? as u32;
                    let top = self.top()?.clone();
                    self.memo.insert(index, top);
                }
                b'r' => {
                    let index = self.u32()?;
                    let top = self.top()?.clone();
                    self.memo.insert(index, top);
                }
                0x94 => {
                    let index = self.memo.len() as u32;
                    let top = self.top()?.clone();
                    self.memo.insert(index, top);
                }
                b'g' => {
                    let index = self.line()?.parse().map_err(|_| "GET")?;
                    let v = self.get(index)?;
                    self.stack.push(v);
                }
                b'h' => {
                    let index = self.u8()? as u32;
                    let v = self.get(index)?;
                    self.stack.push(v);
                }
                b'j' => {
                    let index = self.u32()?;
                    let v = self.get(index)?;
                    self.stack.push(v);
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.stack.push(Value::Global(format!("{module}.{name}")));
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module, name) {
                        (Value::Str(m), Value::Str(n)) => {
                            self.stack.push(Value::Global(format!("{m}.{n}")))
                        }
                        _ => return Err("STACK_GLOBAL without names".into()),
                    }
                }
                b'Q' => {
                    let id = self.pop()?;
                    let storage = self.persistent(id)?;
                    self.stack.push(storage);
                }
                b'R' | 0x81 => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let made = self.call(callable, args)?;
                    self.stack.push(made);
                }
                b'b' => {
                    // BUILD: an object's __setstate__; an OrderedDict's `_metadata` or a
                    // tensor's empty state: nothing a state dict needs.
                    self.pop()?;
                }
                _ => return Err(format!("pickle opcode 0x{op:02x} at byte {}", self.pos - 1)),
            }
        }
    }

    /// `('storage', torch.FloatStorage, key, location, numel[, view])` → a storage.
    fn persistent(&mut self, id: Value) -> Result<Value, String> {
        let Value::Tuple(parts) = id else {
            return Err(format!("persistent id {id:?}"));
        };
        match parts.as_slice() {
            [
                Value::Str(tag),
                Value::Global(class),
                Value::Str(key),
                _,
                _,
                rest @ ..,
            ] if tag == "storage" => {
                if rest.first().is_some_and(|v| !matches!(v, Value::None)) {
                    return Err("a storage view (legacy view_metadata) is not supported".into());
                }
                let kind = storage_kind(class).ok_or_else(|| format!("storage type {class}"))?;
                if !self.storages.contains(key) {
                    self.storages.push(key.clone());
                }
                Ok(Value::Storage(StorageRef {
                    key: key.clone(),
                    kind,
                }))
            }
            _ => Err(format!("persistent id {parts:?}")),
        }
    }

    /// REDUCE: only the constructors of tensors and dicts are known.
    fn call(&mut self, callable: Value, args: Value) -> Result<Value, String> {
        let Value::Global(name) = &callable else {
            return Err(format!("a call of {callable:?}"));
        };
        let Value::Tuple(args) = args else {
            return Err(format!("{name} called without a tuple"));
        };
        match name.as_str() {
            "collections.OrderedDict" | "builtins.dict" | "__builtin__.dict" => {
                Ok(Value::Dict(Rc::default()))
            }
            "torch._utils._rebuild_tensor_v2" | "torch._utils._rebuild_tensor" => {
                match args.as_slice() {
                    [Value::Storage(storage), offset, size, stride, ..] => {
                        Ok(Value::Tensor(TensorRef {
                            storage: storage.clone(),
                            offset: offset.int().ok_or("a tensor's offset")?,
                            size: size.ints().ok_or("a tensor's size")?,
                            stride: stride.ints().ok_or("a tensor's stride")?,
                        }))
                    }
                    _ => Err(format!("{name} with arguments {args:?}")),
                }
            }
            "torch._utils._rebuild_parameter" | "torch._utils._rebuild_parameter_with_state" => {
                match args.into_iter().next() {
                    Some(tensor @ Value::Tensor(_)) => Ok(tensor),
                    other => Err(format!("{name} of {other:?}")),
                }
            }
            // A pickled module or any other class: refused, never run.
            _ => Err(format!(
                "it pickles {name}; only state dicts of tensors can be read (save model.state_dict())"
            )),
        }
    }
}

fn pairs(items: Vec<Value>) -> Result<Vec<(Value, Value)>, String> {
    if items.len() % 2 != 0 {
        return Err("a dict with an odd number of items".into());
    }
    let mut out = Vec::with_capacity(items.len() / 2);
    let mut it = items.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.push((k, v));
    }
    Ok(out)
}
