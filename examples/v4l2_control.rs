//! Sets a V4L2 control by name, as `v4l2-ctl --set-ctrl` does, for the end-to-end tests' guest,
//! which has no v4l-utils: e.g. the test pattern of the kernel's virtual camera, vivid.
//!
//!     v4l2_control DEVICE                 # lists the controls, and each menu's items
//!     v4l2_control DEVICE NAME VALUE      # VALUE: a menu item's name, or a number
//!     v4l2_control /dev/video0 "Test Pattern" "100% Red"
//!
//! The device may be streaming in another process: controls are set on a descriptor of their
//! own.

use v4l::control::{Control, Description, MenuItem, Value};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: v4l2_control DEVICE [NAME VALUE]";
    let device = v4l::Device::with_path(args.get(1).expect(usage))
        .unwrap_or_else(|e| fail(&format!("{}: {e}", args[1])));
    let controls = device
        .query_controls()
        .unwrap_or_else(|e| fail(&format!("cannot list the controls: {e}")));
    let (Some(name), Some(value)) = (args.get(2), args.get(3)) else {
        controls.iter().for_each(print);
        return;
    };
    let control = controls
        .iter()
        .find(|c| c.name.eq_ignore_ascii_case(name))
        .unwrap_or_else(|| fail(&format!("no control {name:?}")));
    let item = control.items.iter().flatten().find_map(|(index, item)| {
        matches!(item, MenuItem::Name(n) if n.eq_ignore_ascii_case(value)).then_some(*index)
    });
    let number = match item {
        Some(index) => i64::from(index),
        None => value
            .parse()
            .unwrap_or_else(|_| fail(&format!("{value:?} is not an item of {name:?}"))),
    };
    device
        .set_control(Control {
            id: control.id,
            value: Value::Integer(number),
        })
        .unwrap_or_else(|e| fail(&format!("cannot set {name:?} to {number}: {e}")));
    println!("{name} = {number}");
}

fn print(control: &Description) {
    println!(
        "{}: {} to {}",
        control.name, control.minimum, control.maximum
    );
    for (index, item) in control.items.iter().flatten() {
        println!("    {index}: {item}");
    }
}

fn fail(message: &str) -> ! {
    eprintln!("v4l2_control: {message}");
    std::process::exit(1);
}
