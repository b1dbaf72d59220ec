//! Writes the EROFS image of an uncompressed layer tar: `write_layer LAYER.tar OUT.erofs
//! [verify]`. Prints the summary and how long it took; with `verify`, also checks the image
//! with [`erofs::verify`].

use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args_os().skip(1);
    let (Some(tar), Some(out)) = (args.next(), args.next()) else {
        return Err("usage: write_layer LAYER.tar OUT.erofs [verify]".into());
    };
    let start = Instant::now();
    let reader = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(tar)?);
    let file = std::fs::File::create(&out)?;
    let summary = erofs::write_layer(reader, &file, &erofs::Options::default())?;
    let secs = start.elapsed().as_secs_f64();
    eprintln!("{summary:#?}\nwrote the image in {secs:.3} s");
    if args.next().is_some_and(|a| a == "verify") {
        eprintln!("{:?}", erofs::verify(&std::fs::read(&out)?)?);
    }
    Ok(())
}
