//! I2C register access: the real bus through rppal (`/dev/i2c-N`), and an emulated BME280 /
//! BMP280 register map that records every transaction.
//!
//! # Enabling the bus
//! `dtparam=i2c_arm=on` in `config.txt` gives `/dev/i2c-1` on GPIO2 (SDA) / GPIO3 (SCL), with
//! 1.8 kΩ pull-ups on the board. `i2cdetect -y 1` lists the addresses that answer.
//!
//! # Troubleshooting
//! - `/dev/i2c-1` missing: add `dtparam=i2c_arm=on` and reboot.
//! - `PermissionDenied`: add the user to the `i2c` group, or give the container
//!   `--device /dev/i2c-1`.
//! - Address does not answer (`Remote I/O error`, ENXIO): check wiring; a BME280 is at 0x76 with
//!   SDO to GND, 0x77 with SDO to VDDIO.
//! - The kernel's bmp280 driver holds the device (`dtoverlay=i2c-sensor,bme280`): read it through
//!   IIO instead (`bus = "iio"`), not both.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// An I2C failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum I2cError {
    /// `/dev/i2c-N` cannot be opened: the bus is not enabled or this is not a Pi.
    #[error("cannot open I2C bus {bus} ({detail}); enable it with dtparam=i2c_arm=on, or run with --simulate")]
    Unavailable { bus: u8, detail: String },
    /// Nothing acknowledged the address.
    #[error("no device answers at address {address:#04x}")]
    NoAck { address: u16 },
    /// Any other transfer error.
    #[error("I2C transfer to {address:#04x} failed: {detail}")]
    Transfer { address: u16, detail: String },
}

/// Register-style I2C transfers to a 7-bit address.
pub trait I2cBus: Send {
    /// Writes `write` (usually a register address), then reads `read.len()` bytes, in one
    /// transaction with a repeated start.
    fn write_read(&mut self, address: u16, write: &[u8], read: &mut [u8]) -> Result<(), I2cError>;
    /// Writes `bytes` (register address, then values).
    fn write(&mut self, address: u16, bytes: &[u8]) -> Result<(), I2cError>;
}

/// The Pi's I2C controller through rppal.
pub struct RppalI2c {
    bus: u8,
    i2c: rppal::i2c::I2c,
    address: Option<u16>,
}

impl RppalI2c {
    /// Opens `/dev/i2c-<bus>`.
    pub fn open(bus: u8) -> Result<RppalI2c, I2cError> {
        rppal::i2c::I2c::with_bus(bus)
            .map(|i2c| RppalI2c {
                bus,
                i2c,
                address: None,
            })
            .map_err(|e| I2cError::Unavailable {
                bus,
                detail: e.to_string(),
            })
    }

    fn select(&mut self, address: u16) -> Result<(), I2cError> {
        if self.address != Some(address) {
            self.i2c
                .set_slave_address(address)
                .map_err(|e| I2cError::Transfer {
                    address,
                    detail: e.to_string(),
                })?;
            self.address = Some(address);
        }
        Ok(())
    }

    fn map(&self, address: u16, e: rppal::i2c::Error) -> I2cError {
        match &e {
            rppal::i2c::Error::Io(io) if io.raw_os_error() == Some(libc_enxio()) => {
                I2cError::NoAck { address }
            }
            _ => I2cError::Transfer {
                address,
                detail: format!("bus {}: {e}", self.bus),
            },
        }
    }
}

/// ENXIO ("No such device or address"): what the kernel returns when no device acknowledges.
const fn libc_enxio() -> i32 {
    6
}

impl I2cBus for RppalI2c {
    fn write_read(&mut self, address: u16, write: &[u8], read: &mut [u8]) -> Result<(), I2cError> {
        self.select(address)?;
        self.i2c
            .write_read(write, read)
            .map_err(|e| self.map(address, e))
    }

    fn write(&mut self, address: u16, bytes: &[u8]) -> Result<(), I2cError> {
        self.select(address)?;
        self.i2c
            .write(bytes)
            .map(|_| ())
            .map_err(|e| self.map(address, e))
    }
}

/// One transaction seen by [`FakeBme280`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transfer {
    /// Register read: start register and byte count.
    Read { register: u8, len: usize },
    /// Register write: register and values.
    Write { register: u8, values: Vec<u8> },
}

#[derive(Debug)]
struct FakeState {
    regs: [u8; 256],
    /// Status reads that still show "measuring" after a forced-mode start.
    busy_reads: u32,
    /// How many status reads a measurement takes.
    conversion_reads: u32,
    raw: (u32, u32, u16),
    log: Vec<Transfer>,
    present: bool,
}

/// An emulated BME280 / BMP280 (Bosch datasheet section 5, "Global memory map"): chip id at
/// 0xD0, calibration at 0x88–0xA1 and 0xE1–0xE7, control at 0xF2/0xF4/0xF5, status at 0xF3,
/// data at 0xF7–0xFE. Writing forced mode to `ctrl_meas` starts a measurement that reports
/// "measuring" for a few status reads, then loads the raw ADC values set with
/// [`FakeBme280::set_raw`] and falls back to sleep mode, as the chip does. Clones share the chip.
#[derive(Clone, Debug)]
pub struct FakeBme280 {
    pub address: u16,
    state: Arc<Mutex<FakeState>>,
}

impl FakeBme280 {
    /// A chip with id `chip_id` (0x60 BME280, 0x58 BMP280) at `address` with the given
    /// calibration registers (0x88..=0xA1, 26 bytes; 0xE1..=0xE7, 7 bytes).
    pub fn new(address: u16, chip_id: u8, calib1: &[u8; 26], calib2: &[u8; 7]) -> FakeBme280 {
        let mut regs = [0u8; 256];
        regs[0xD0] = chip_id;
        regs[0x88..=0xA1].copy_from_slice(calib1);
        regs[0xE1..=0xE7].copy_from_slice(calib2);
        FakeBme280 {
            address,
            state: Arc::new(Mutex::new(FakeState {
                regs,
                busy_reads: 0,
                conversion_reads: 2,
                raw: (0x80000, 0x80000, 0x8000),
                log: Vec::new(),
                present: true,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The raw 20-bit pressure and temperature and 16-bit humidity ADC values the next
    /// measurement produces.
    pub fn set_raw(&self, adc_p: u32, adc_t: u32, adc_h: u16) {
        self.lock().raw = (adc_p, adc_t, adc_h);
    }

    /// Makes the chip stop answering (unplugged).
    pub fn set_present(&self, present: bool) {
        self.lock().present = present;
    }

    /// Every transaction so far, oldest first.
    pub fn log(&self) -> Vec<Transfer> {
        self.lock().log.clone()
    }

    /// A register's current value.
    pub fn register(&self, r: u8) -> u8 {
        self.lock().regs[usize::from(r)]
    }
}

impl I2cBus for FakeBme280 {
    fn write_read(&mut self, address: u16, write: &[u8], read: &mut [u8]) -> Result<(), I2cError> {
        let mut st = self.lock();
        if address != self.address || !st.present {
            return Err(I2cError::NoAck { address });
        }
        let &[register] = write else {
            return Err(I2cError::Transfer {
                address,
                detail: "expected a one-byte register address".into(),
            });
        };
        st.log.push(Transfer::Read {
            register,
            len: read.len(),
        });
        if register == 0xF3 && st.busy_reads > 0 {
            st.busy_reads -= 1;
            st.regs[0xF3] = if st.busy_reads > 0 { 0x08 } else { 0x00 };
        }
        // Burst reads auto-increment the register address.
        for (i, b) in read.iter_mut().enumerate() {
            *b = st.regs[(usize::from(register) + i) & 0xFF];
        }
        Ok(())
    }

    fn write(&mut self, address: u16, bytes: &[u8]) -> Result<(), I2cError> {
        let mut st = self.lock();
        if address != self.address || !st.present {
            return Err(I2cError::NoAck { address });
        }
        let Some((&register, values)) = bytes.split_first() else {
            return Err(I2cError::Transfer {
                address,
                detail: "empty write".into(),
            });
        };
        st.log.push(Transfer::Write {
            register,
            values: values.to_vec(),
        });
        // Writes are (register, value) pairs; a single pair is the common case.
        for (i, &v) in values.iter().enumerate() {
            let r = usize::from(register) + i;
            if r == 0xF4 && v & 0x03 == 0x01 {
                // Forced mode: measure, then back to sleep.
                let (p, t, h) = st.raw;
                st.regs[0xF7] = (p >> 12) as u8;
                st.regs[0xF8] = (p >> 4) as u8;
                st.regs[0xF9] = ((p & 0x0F) << 4) as u8;
                st.regs[0xFA] = (t >> 12) as u8;
                st.regs[0xFB] = (t >> 4) as u8;
                st.regs[0xFC] = ((t & 0x0F) << 4) as u8;
                st.regs[0xFD] = (h >> 8) as u8;
                st.regs[0xFE] = h as u8;
                st.busy_reads = st.conversion_reads;
                st.regs[0xF3] = 0x08;
                st.regs[0xF4] = v & !0x03;
            } else if r == 0xE0 && v == 0xB6 {
                // Soft reset: control registers back to 0.
                st.regs[0xF2] = 0;
                st.regs[0xF4] = 0;
                st.regs[0xF5] = 0;
            } else if r < 256 {
                st.regs[r] = v;
            }
        }
        Ok(())
    }
}
