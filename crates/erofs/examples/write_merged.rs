//! Writes one EROFS image of a stack of uncompressed layer tars, bottom first:
//! `write_merged OUT.erofs LAYER.tar… [--verify]`. Prints the summary and how long it took;
//! with `--verify`, also checks the image with [`erofs::verify`].

use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let verify = args.last().is_some_and(|a| a == "--verify");
    if verify {
        args.pop();
    }
    let Some((out, layers)) = args.split_first() else {
        return Err("usage: write_merged OUT.erofs LAYER.tar… [--verify]".into());
    };
    let start = Instant::now();
    let file = std::fs::File::create(out)?;
    let mut merger = erofs::Merger::new(&file, &erofs::Options::default());
    for layer in layers {
        let reader = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(layer)?);
        merger = merger.add_layer(reader)?;
    }
    let summary = merger.finish()?;
    let secs = start.elapsed().as_secs_f64();
    eprintln!("{summary:#?}\nwrote the image in {secs:.3} s");
    if verify {
        eprintln!("{:?}", erofs::verify(&std::fs::read(out)?)?);
    }
    Ok(())
}
